# kstrap's verification checker: proves, from inside the stack's namespace, that the stack's
# services answer the way its front end uses them. kstrap runs it in a Job (src/verify/job.rs)
# with the image a service of the stack already runs (voice-ai: speaches' own Python), so the
# node pulls nothing new. Only the standard library: urllib, json, time.
#
# Input: the environment variable KSTRAP_VERIFY_CONFIG, a JSON document kstrap builds from the
# stack's `verify:` section (src/verify/mod.rs `CheckerConfig`):
#   {"request_timeout_s": N,
#    "http": [{"service": S, "url": U}],                       # GET, any 2xx is ok
#    "voice": {"sentence": T, "threshold": F,
#              "tts": {"service", "url", "model", "voice", "gpu"},
#              "stt": {"service", "url", "model", "gpu"},
#              "llm": {"service", "url", "model", "gpu", "strict", "question", "answers"}}}
# Output: one JSON line {"links": [...]} on stdout and in /dev/termination-log (the kubelet
# hands the file's first 4096 bytes to the pod's status as the container's termination message,
# which is how kstrap reads the outcome). Each link: name, service, status (ok | warning |
# failed | skipped | not_checked), ms (latency), sent, got, detail, and metrics for the LLM.
# Exit status 0 unless a link failed (then 1), so the Job's own status agrees.
#
# The APIs, at the versions the stack pins (manifests/IMAGES.md):
# - Kokoro-FastAPI v0.8.0 (api/src/routers/openai_compatible.py `create_speech`): POST
#   /v1/audio/speech {model, input, voice, response_format, stream}; 400 unsupported model or
#   voice, 500 on a synthesis error ({"detail": {...}}). It does not say which device it runs
#   on: /debug/system answers 403 unless ENABLE_DEBUG_ENDPOINTS (api/src/routers/debug.py).
# - speaches v0.8.3 (src/speaches/routers/stt.py `transcribe_file`): POST
#   /v1/audio/transcriptions, multipart form: file, model, language, response_format=json ->
#   {"text": ...}; 404 "Model '<id>' is not installed locally" until POST /v1/models/<id> pulled
#   it; 500 when the model card is missing. Its API does not say which device whisper runs on
#   (GET /api/ps lists model ids only, src/speaches/routers/misc.py).
# - Ollama v0.12.10 (server/routes.go `GenerateHandler`, `PsHandler`; api/types.go): POST
#   /api/generate {model, prompt, stream: true, options} streams JSON lines {response, done}; the
#   last line carries eval_count and eval_duration (ns); 404 {"error": "model 'x' not found"};
#   an {"error": ...} line mid-stream. GET /api/ps -> {"models": [{name, model, size,
#   size_vram}]}: the model is wholly in GPU memory when size_vram == size.

import json
import os
import re
import sys
import time
import urllib.error
import urllib.request

TERMINATION_LOG = os.environ.get("KSTRAP_VERIFY_TERMINATION_LOG", "/dev/termination-log")
# The kubelet keeps at most 4096 bytes of a termination message
# (k8s.io/kubernetes pkg/kubelet/kuberuntime/kuberuntime_container.go, maxMsgSize).
MESSAGE_LIMIT = 4096
TEXT_LIMIT = 160


def clip(text, limit=TEXT_LIMIT):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def words(text):
    """Lowercase words, punctuation dropped: what the comparison of a transcript looks at."""
    return re.findall(r"[a-z0-9']+", text.lower().replace("\u2019", "'"))


def word_error_rate(reference, hypothesis):
    """Word-level edit distance (substitutions, insertions, deletions) over the reference's length."""
    ref, hyp = words(reference), words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1] / len(ref)


class Failure(Exception):
    def __init__(self, got, detail=""):
        super().__init__(got)
        self.got = got
        self.detail = detail


def request(method, url, timeout, body=None, headers=None):
    """(status, headers, body bytes, seconds). HTTP errors come back with their status; a refused
    connection or a timeout raises Failure."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read(), time.monotonic() - started
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read(), time.monotonic() - started
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        if isinstance(reason, (TimeoutError,)) or "timed out" in str(reason):
            raise Failure("no answer within %ss" % timeout, "timed out")
        raise Failure("no connection: %s" % clip(reason), "cannot connect")


def error_text(status, body):
    try:
        doc = json.loads(body)
        err = doc.get("error") or doc.get("detail") or doc
        if isinstance(err, dict):
            err = err.get("message") or err
    except (ValueError, AttributeError):
        err = body.decode("utf-8", "replace")
    return "HTTP %d: %s" % (status, clip(err))


def link(name, service, status, sent, got="", detail="", ms=None, metrics=None):
    out = {"name": name, "service": service, "status": status, "sent": clip(sent), "got": clip(got)}
    if detail:
        out["detail"] = clip(detail, 240)
    if ms is not None:
        out["ms"] = int(ms)
    if metrics:
        out["metrics"] = metrics
    if detail == "timed out" or got.startswith("no answer within"):
        out["timeout"] = True
    return out


def check_http(check, timeout):
    sent = "GET " + check["url"]
    try:
        status, _, body, secs = request("GET", check["url"], timeout)
    except Failure as f:
        return link("health", check["service"], "failed", sent, f.got, f.detail)
    if 200 <= status < 300:
        return link("health", check["service"], "ok", sent, "HTTP %d" % status, ms=secs * 1000)
    return link("health", check["service"], "failed", sent, error_text(status, body), ms=secs * 1000)


def synthesize(tts, sentence, timeout):
    url = tts["url"] + "/v1/audio/speech"
    payload = {"model": tts["model"], "input": sentence, "voice": tts["voice"], "response_format": "wav", "stream": False}
    sent = "POST %s %s" % (url, json.dumps({k: payload[k] for k in ("model", "voice", "input")}))
    try:
        status, _, body, secs = request(
            "POST", url, timeout, json.dumps(payload).encode(), {"Content-Type": "application/json"}
        )
    except Failure as f:
        return None, link("speech synthesis", tts["service"], "failed", sent, f.got, f.detail)
    if status != 200:
        return None, link("speech synthesis", tts["service"], "failed", sent, error_text(status, body), ms=secs * 1000)
    if len(body) < 44:
        return None, link(
            "speech synthesis", tts["service"], "failed", sent, "HTTP 200 with %d bytes: no audio" % len(body), ms=secs * 1000
        )
    return body, link("speech synthesis", tts["service"], "ok", sent, "HTTP 200, %d bytes of audio" % len(body), ms=secs * 1000)


def multipart(fields, audio):
    boundary = "kstrap-verify-%d" % int(time.time() * 1000)
    parts = []
    for name, value in fields:
        parts.append(('--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (boundary, name, value)).encode())
    parts.append(
        (
            '--%s\r\nContent-Disposition: form-data; name="file"; filename="speech.wav"\r\nContent-Type: audio/wav\r\n\r\n'
            % boundary
        ).encode()
        + audio
        + b"\r\n"
    )
    parts.append(("--%s--\r\n" % boundary).encode())
    return b"".join(parts), "multipart/form-data; boundary=" + boundary


def transcribe(stt, audio, sentence, threshold, timeout):
    url = stt["url"] + "/v1/audio/transcriptions"
    body, ctype = multipart([("model", stt["model"]), ("language", "en"), ("response_format", "json")], audio)
    sent = "POST %s (model %s, %d bytes of audio)" % (url, stt["model"], len(audio))
    name = "transcription"
    try:
        status, _, answer, secs = request("POST", url, timeout, body, {"Content-Type": ctype})
    except Failure as f:
        return link(name, stt["service"], "failed", sent, f.got, f.detail)
    ms = secs * 1000
    if status != 200:
        detail = ""
        if status == 404:
            detail = "the speech-to-text model is not installed: the model-pull Job pulls it (POST /v1/models/<id>)"
        return link(name, stt["service"], "failed", sent, error_text(status, answer), detail, ms=ms)
    try:
        text = json.loads(answer)["text"]
    except (ValueError, KeyError, TypeError):
        return link(name, stt["service"], "failed", sent, "HTTP 200 without a text field: " + clip(answer), ms=ms)
    wer = word_error_rate(sentence, text)
    got = "heard %r (word error rate %.2f)" % (clip(text, 100), wer)
    if 1.0 - wer >= threshold:
        return link(name, stt["service"], "ok", sent, got, ms=ms)
    return link(
        name,
        stt["service"],
        "failed",
        sent,
        got,
        "the transcript matches %.0f%% of the spoken words; at least %.0f%% is needed" % (max(0.0, 1 - wer) * 100, threshold * 100),
        ms=ms,
    )


def answer_ok(answer, expected):
    said = words(answer)
    return any(e.lower() in said for e in expected)


def ask(llm, timeout):
    url = llm["url"] + "/api/generate"
    payload = {"model": llm["model"], "prompt": llm["question"], "stream": True, "options": {"temperature": 0}}
    sent = "POST %s (model %s) %r" % (url, llm["model"], llm["question"])
    name = "answer"
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST", headers={"Content-Type": "application/json"})
    started = time.monotonic()
    first = None
    text = []
    last = {}
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            for line in r:
                if not line.strip():
                    continue
                doc = json.loads(line)
                if "error" in doc:
                    return link(name, llm["service"], "failed", sent, "error in the stream: " + clip(doc["error"]))
                if doc.get("response") and first is None:
                    first = time.monotonic() - started
                text.append(doc.get("response", ""))
                if doc.get("done"):
                    last = doc
                    break
    except urllib.error.HTTPError as e:
        detail = ""
        if e.code == 404:
            detail = "the model is not in Ollama: the model-pull Job pulls it (ollama pull %s)" % llm["model"]
        return link(name, llm["service"], "failed", sent, error_text(e.code, e.read()), detail)
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        got = "no answer within %ss" % timeout if "timed out" in str(reason) else "no connection: %s" % clip(reason)
        return link(name, llm["service"], "failed", sent, got)
    except ValueError as e:
        return link(name, llm["service"], "failed", sent, "not JSON lines: %s" % clip(e))
    answer = "".join(text)
    if not last:
        return link(name, llm["service"], "failed", sent, "the stream ended before done: %r" % clip(answer))
    if not answer.strip():
        return link(name, llm["service"], "failed", sent, "an empty answer")
    metrics = {"ttft_ms": int((first or 0) * 1000)}
    if last.get("eval_count") and last.get("eval_duration"):
        metrics["tokens_per_s"] = round(last["eval_count"] / (last["eval_duration"] / 1e9), 1)
    got = "answered %r" % clip(answer, 100)
    if answer_ok(answer, llm["answers"]):
        return link(name, llm["service"], "ok", sent, got, ms=metrics["ttft_ms"], metrics=metrics)
    detail = "expected %s" % " or ".join(llm["answers"])
    status = "failed" if llm.get("strict") else "warning"
    if not llm.get("strict"):
        detail += "; a small model may answer wrongly: the service works"
    return link(name, llm["service"], status, sent, got, detail, ms=metrics["ttft_ms"], metrics=metrics)


def in_vram(llm, timeout):
    url = llm["url"] + "/api/ps"
    sent = "GET " + url
    name = "model in GPU memory"
    try:
        status, _, body, secs = request("GET", url, timeout)
    except Failure as f:
        return link(name, llm["service"], "failed", sent, f.got, f.detail)
    if status != 200:
        return link(name, llm["service"], "failed", sent, error_text(status, body))
    try:
        models = json.loads(body).get("models") or []
    except (ValueError, AttributeError):
        return link(name, llm["service"], "failed", sent, "not JSON: " + clip(body))
    want = llm["model"]
    found = [m for m in models if want in (m.get("name"), m.get("model"))]
    if not found:
        loaded = ", ".join(m.get("name", "?") for m in models) or "none"
        return link(name, llm["service"], "failed", sent, "%s is not loaded (loaded: %s)" % (want, loaded))
    m = found[0]
    size, vram = m.get("size", 0), m.get("size_vram", 0)
    got = "size %d, size_vram %d" % (size, vram)
    if size and vram == size:
        return link(name, llm["service"], "ok", sent, got, ms=secs * 1000)
    share = 100.0 * vram / size if size else 0.0
    return link(
        name,
        llm["service"],
        "failed",
        sent,
        got,
        "only %.0f%% of the model is in GPU memory: Ollama runs the rest on the CPU (no GPU in the pod, or not enough free GPU memory)" % share,
    )


def not_checked(service, why):
    return link("on CUDA", service, "not_checked", "", "", why)


def run(config):
    timeout = config.get("request_timeout_s", 120)
    links = [check_http(c, timeout) for c in config.get("http", [])]
    voice = config.get("voice")
    if voice:
        tts, stt, llm = voice["tts"], voice["stt"], voice["llm"]
        audio, synth = synthesize(tts, voice["sentence"], timeout)
        links.append(synth)
        if audio is None:
            links.append(link("transcription", stt["service"], "skipped", "", "", "needs the speech synthesis to work"))
        else:
            links.append(transcribe(stt, audio, voice["sentence"], voice["threshold"], timeout))
        links.append(ask(llm, timeout))
        if llm.get("gpu"):
            links.append(in_vram(llm, timeout))
        if tts.get("gpu"):
            links.append(not_checked(tts["service"], "Kokoro-FastAPI's API does not say which device it runs on"))
        if stt.get("gpu"):
            links.append(not_checked(stt["service"], "speaches' API does not say which device whisper runs on"))
    return {"links": links}


def encode(report):
    """The report as one line within the kubelet's limit. When it is too long: what links that
    did not fail sent and got goes first, then every text is clipped, then links that did not
    fail are left out from the end (counted in "omitted"); failed links stay."""

    def text():
        return json.dumps(report, separators=(",", ":"))

    if len(text().encode()) <= MESSAGE_LIMIT:
        return text()
    for l in report["links"]:
        if l["status"] != "failed":
            l.pop("sent", None)
            l.pop("got", None)
            l.pop("detail", None)
    for limit in (120, 60):
        if len(text().encode()) <= MESSAGE_LIMIT:
            return text()
        for l in report["links"]:
            for k in ("sent", "got", "detail"):
                if k in l:
                    l[k] = clip(l[k], limit)
    # Still too long: links after the first failed one keep only their names and what came back,
    # then are left out from the end (passed ones first), counted in "omitted" and
    # "omitted_failed".
    first = next((i for i, l in enumerate(report["links"]) if l["status"] == "failed"), None)
    for i, l in enumerate(report["links"]):
        if i != first:
            l.pop("sent", None)
            l.pop("detail", None)
    omitted = omitted_failed = 0
    while len(text().encode()) > MESSAGE_LIMIT and len(report["links"]) > 1:
        passed = [i for i, l in enumerate(report["links"]) if l["status"] != "failed"]
        later = [i for i in range(len(report["links"])) if i != first]
        victim = passed[-1] if passed else later[-1]
        if report["links"][victim]["status"] == "failed":
            omitted_failed += 1
            report["omitted_failed"] = omitted_failed
        else:
            omitted += 1
            report["omitted"] = omitted
        report["links"].pop(victim)
        if first is not None and victim < first:
            first -= 1
    return text()


def main():
    try:
        config = json.loads(os.environ["KSTRAP_VERIFY_CONFIG"])
    except (KeyError, ValueError) as e:
        report = {"links": [link("configuration", "kstrap-verify", "failed", "", "", "bad KSTRAP_VERIFY_CONFIG: %s" % e)]}
    else:
        report = run(config)
    line = encode(report)
    print(line, flush=True)
    try:
        with open(TERMINATION_LOG, "w") as f:
            f.write(line)
    except OSError:
        pass
    return 1 if any(l["status"] == "failed" for l in report["links"]) else 0


if __name__ == "__main__":
    sys.exit(main())
