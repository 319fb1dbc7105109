# kstrap's verification checker for stacks without a Python: an HTTP GET through each Service to
# its health path, with busybox's own sh and wget (busybox 1.37.0, the image the stack's Jobs
# already run, or the one kstrap names). It writes the same report as check.py: one JSON line
# {"links": [...]} on stdout and in /dev/termination-log, exit 1 when a link failed.
#
# Input: KSTRAP_VERIFY_HTTP, one check per line: "<service> <url>". Latency comes from
# /proc/uptime (hundredths of a second), which every Linux has.
log="${KSTRAP_VERIFY_TERMINATION_LOG:-/dev/termination-log}"
timeout="${KSTRAP_VERIFY_TIMEOUT_S:-30}"
now_ms() {
    read -r up _ < /proc/uptime
    echo "${up%.*}${up#*.}0"
}
esc() {
    printf '%s' "$1" | tr -d '\r' | tr '\n' ' ' | sed 's/\\/\\\\/g; s/"/\\"/g' | cut -c1-160
}
links=""
failed=0
while read -r service url; do
    [ -n "$service" ] || continue
    start=$(now_ms)
    out=$(wget -q -S -O /dev/null -T "$timeout" "$url" 2>&1)
    rc=$?
    ms=$(( $(now_ms) - start ))
    status_line=$(printf '%s\n' "$out" | grep -m1 'HTTP/' | sed 's/^ *//')
    if [ "$rc" = 0 ]; then
        state=ok
        got="${status_line:-HTTP 2xx}"
    else
        state=failed
        failed=1
        got="${status_line:-$(printf '%s' "$out" | tail -n 1)}"
        [ -n "$got" ] || got="wget exited $rc"
    fi
    entry="{\"name\":\"health\",\"service\":\"$(esc "$service")\",\"status\":\"$state\",\"sent\":\"GET $(esc "$url")\",\"got\":\"$(esc "$got")\",\"ms\":$ms}"
    links="${links:+$links,}$entry"
done <<CHECKS
${KSTRAP_VERIFY_HTTP}
CHECKS
line="{\"links\":[$links]}"
printf '%s\n' "$line"
printf '%s' "$line" > "$log" 2>/dev/null
exit "$failed"
