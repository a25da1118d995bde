//! Numbers and errors as people read them: sizes (`1.2 MiB`), durations
//! (`41.2s`, `3m 12s`) and I/O error reasons ("permission denied").

use std::io;
use std::time::Duration;

/// An I/O error's reason in lower case without the `(os error N)` suffix:
/// "permission denied", "no such file or directory".
pub fn io_reason(e: &io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error") {
        Some(i) => &s[..i],
        None => &s,
    };
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A size for people: `512 B`, `1.2 MiB`.
pub fn human_size(bytes: u64) -> String {
    bytesize::ByteSize::b(bytes).display().iec().to_string()
}

/// A duration for people: `350ms`, `41.2s`, `3m 12s`, `2h 5m`.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    if ms < 60_000 {
        return format!("{:.1}s", d.as_secs_f64());
    }
    let secs = d.as_secs();
    let rounded = if secs < 3600 {
        Duration::from_secs(secs)
    } else {
        Duration::from_secs(secs / 60 * 60)
    };
    humantime::format_duration(rounded).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(Duration::from_millis(350)), "350ms");
        assert_eq!(human_duration(Duration::from_millis(41_230)), "41.2s");
        assert_eq!(human_duration(Duration::from_secs(192)), "3m 12s");
        assert_eq!(human_duration(Duration::from_secs(7530)), "2h 5m");
    }

    #[test]
    fn io_reasons_are_short() {
        let e = io::Error::from(rustix::io::Errno::ACCESS);
        assert_eq!(io_reason(&e), "permission denied");
    }
}
