//! Byte and size formatting shared by every human-facing output.

pub const MIB: u64 = 1024 * 1024;
pub const GIB: u64 = 1024 * MIB;
pub const TIB: u64 = 1024 * GIB;

/// Bytes as GiB, for comparisons with profile thresholds (which are in GiB).
pub fn gib(bytes: u64) -> f64 {
    bytes as f64 / GIB as f64
}

/// "31.8 GiB", "512 MiB": one decimal, binary units, as `free -h` prints them.
pub fn human_bytes(bytes: u64) -> String {
    if bytes >= TIB {
        format!("{:.1} TiB", bytes as f64 / TIB as f64)
    } else if bytes >= GIB {
        format!("{:.1} GiB", gib(bytes))
    } else {
        format!("{} MiB", bytes / MIB)
    }
}

/// A threshold as written in a profile: "30 GiB", "7.5 GiB".
pub fn human_gib(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0} GiB")
    } else {
        format!("{value:.1} GiB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_free() {
        assert_eq!(human_bytes(32607 * MIB), "31.8 GiB");
        assert_eq!(human_bytes(512 * MIB), "512 MiB");
        assert_eq!(human_bytes(1536 * GIB), "1.5 TiB");
        assert_eq!(human_gib(30.0), "30 GiB");
        assert_eq!(human_gib(7.5), "7.5 GiB");
    }
}
