//! `memorun stats`: counters, sizes and time saved, as an aligned table or
//! as a stable JSON object.
//!
//! JSON fields (all numbers unless noted; times in ms since the epoch):
//! `hits`, `misses`, `hit_rate` (0..1, or null with no runs), `time_saved_ms`,
//! `not_recorded` (object: `nonzero_exit`, `signal`, `input_changed`,
//! `output_undelivered`, `cache_error`), `errors`, `corrupt`, `evicted`,
//! `entries`, `bytes_on_disk`, `record_bytes` (the hit records' disk space,
//! part of `bytes_on_disk`), `record_budget` (what they may take),
//! `entries_with_record`, `max_bytes`, `max_entries` (or null),
//! `oldest_ms`, `newest_ms`, `since_ms` (when counters were last zeroed; or
//! null), `top_commands` (array of `command` (string), `hits`,
//! `time_saved_ms`: kept per command in its directory, so entries since
//! removed still count), `remote` (object: `url` (string without
//! credentials, or null when no remote is configured), `hits`, `misses`,
//! `uploads`, `bytes_down`, `bytes_up`, `errors`, `timeouts`, `corrupt`,
//! `incomplete`, `too_large`, `skipped`, and `cooldown`: an array, one
//! object per remote that failed lately (`url`, `failures`, `until_ms`,
//! `active` (bool), `reason`), empty when none did).

use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use crate::config::CacheLocation;
use crate::remote::cooldown::{self, State};
use crate::store::age;
use crate::store::counters::Counter;
use crate::store::db::SqliteStore;
use crate::store::evict::Limits;
use crate::store::inventory::StoreStats;
use crate::term::format::{human_duration, human_size};

/// Run `memorun stats`; returns the exit code.
pub fn stats(
    location: &CacheLocation,
    limits: Limits,
    remote: Option<&str>,
    json: bool,
    zero: bool,
) -> Result<i32> {
    let mut cooling = Vec::new();
    let s = match location.existing_dir()? {
        None => StoreStats::default(),
        Some(dir) => {
            cooling = crate::remote::cooldown::all(&dir);
            let mut store = SqliteStore::open(&dir)?;
            // The records' budget is a share of the limit.
            store.set_limits(limits);
            if zero {
                store.zero_counters()?;
            }
            let root = store.root().to_path_buf();
            store.stats(&root)?
        }
    };
    let text = if json {
        serde_json::to_string_pretty(&to_json(&s, limits, remote, &cooling))? + "\n"
    } else if zero {
        "counters reset\n".to_string()
    } else {
        to_text(&s, limits) + &remote_text(&s, remote, &cooling)
    };
    crate::term::output::print_stdout(text.as_bytes())
}

fn count(s: &StoreStats, counter: Counter) -> u64 {
    s.counters.get(counter.name()).copied().unwrap_or(0).max(0) as u64
}

fn hit_rate(s: &StoreStats) -> Option<f64> {
    let (h, m) = (count(s, Counter::Hits), count(s, Counter::Misses));
    (h + m > 0).then(|| h as f64 / (h + m) as f64)
}

/// The remote counters, in the order shown, with their JSON names.
const REMOTE: [(&str, Counter, &str); 11] = [
    ("hits", Counter::RemoteHits, "Hits"),
    ("misses", Counter::RemoteMisses, "Misses"),
    ("uploads", Counter::RemoteUploads, "Uploads"),
    ("bytes_down", Counter::RemoteBytesDown, "Downloaded"),
    ("bytes_up", Counter::RemoteBytesUp, "Uploaded"),
    ("errors", Counter::RemoteErrors, "Errors"),
    ("timeouts", Counter::RemoteTimeouts, "Timeouts"),
    ("corrupt", Counter::RemoteCorrupt, "Failed verification"),
    ("incomplete", Counter::RemoteIncomplete, "Blobs gone"),
    ("too_large", Counter::RemoteTooLarge, "Too large to upload"),
    ("skipped", Counter::RemoteSkipped, "Skipped (cooling down)"),
];

/// The remote section of the text: shown when a remote is configured or
/// one was used, with the remotes cooling down.
fn remote_text(s: &StoreStats, url: Option<&str>, cooling: &[State]) -> String {
    if url.is_none() && cooling.is_empty() && REMOTE.iter().all(|(_, c, _)| count(s, *c) == 0) {
        return String::new();
    }
    let mut out = format!("Remote cache  {}\n", url.unwrap_or("(not configured now)"));
    let width = REMOTE.iter().map(|(_, _, l)| l.len()).max().unwrap_or(0);
    for (json, counter, label) in REMOTE {
        let n = count(s, counter);
        let value = match json.starts_with("bytes") {
            true => human_size(n),
            false => n.to_string(),
        };
        out.push_str(&format!("  {label:width$}  {value:>8}\n"));
    }
    for c in cooling {
        let what = match c.active() {
            true => format!(
                "cooling down until {} after {} failure{} ({}); MEMORUN_REMOTE_RETRY=1 retries now",
                cooldown::clock(c.until_ms),
                c.failures,
                if c.failures == 1 { "" } else { "s" },
                c.reason
            ),
            false => format!(
                "cooled down since {}; the next run asks it ({})",
                cooldown::clock(c.until_ms),
                c.reason
            ),
        };
        out.push_str(&format!("  {}: {what}\n", c.url));
    }
    out
}

fn to_json(
    s: &StoreStats,
    limits: Limits,
    url: Option<&str>,
    cooling: &[State],
) -> serde_json::Value {
    let mut remote = serde_json::Map::new();
    remote.insert("url".into(), json!(url));
    for (name, counter, _) in REMOTE {
        remote.insert(name.into(), json!(count(s, counter)));
    }
    let cooling: Vec<_> = cooling
        .iter()
        .map(|c| {
            json!({
                "url": c.url,
                "failures": c.failures,
                "until_ms": c.until_ms,
                "active": c.active(),
                "reason": c.reason,
            })
        })
        .collect();
    remote.insert("cooldown".into(), json!(cooling));
    let top: Vec<_> = s
        .top
        .iter()
        .map(|t| json!({ "command": t.display, "hits": t.hits, "time_saved_ms": t.saved_ms }))
        .collect();
    json!({
        "hits": count(s, Counter::Hits),
        "misses": count(s, Counter::Misses),
        "hit_rate": hit_rate(s),
        "time_saved_ms": count(s, Counter::SavedMs),
        "restored_files": count(s, Counter::RestoredFiles),
        "restored_bytes": count(s, Counter::RestoredBytes),
        "not_recorded": {
            "nonzero_exit": count(s, Counter::NotRecordedExit),
            "signal": count(s, Counter::NotRecordedSignal),
            "input_changed": count(s, Counter::NotRecordedInput),
            "output_undelivered": count(s, Counter::NotRecordedUndelivered),
            "cache_error": count(s, Counter::NotRecordedCache),
            "untraceable": count(s, Counter::NotRecordedUntraced),
        },
        "errors": count(s, Counter::Errors),
        "corrupt": count(s, Counter::Corrupt),
        "evicted": count(s, Counter::Evicted),
        "entries": s.entries,
        "bytes_on_disk": s.disk_bytes,
        "record_bytes": s.record_bytes,
        "record_budget": s.record_budget,
        "entries_with_record": s.entries_with_record,
        "temp_files": s.temp.files,
        "temp_bytes": s.temp.bytes,
        "max_bytes": limits.max_bytes,
        "max_entries": limits.max_entries,
        "oldest_ms": s.oldest_ms,
        "newest_ms": s.newest_ms,
        "since_ms": s.since_ms,
        "top_commands": top,
        "remote": remote,
    })
}

fn ago(ms: Option<i64>) -> String {
    match ms {
        None => "-".into(),
        Some(t) => format!("{} ago", human_duration(age(t))),
    }
}

/// `12.0 KiB of 64.0 MiB (3 entries)`: the hit records' space, of their
/// budget, and how many entries have one.
fn records_line(s: &StoreStats) -> String {
    format!(
        "{} of {} ({} entries)",
        human_size(s.record_bytes),
        human_size(s.record_budget),
        s.entries_with_record
    )
}

fn to_text(s: &StoreStats, limits: Limits) -> String {
    let saved = Duration::from_millis(count(s, Counter::SavedMs));
    let rate = match hit_rate(s) {
        Some(r) => format!("{:.1} %", r * 100.0),
        None => "-".into(),
    };
    let mut size = format!(
        "{} of {} ({:.1} %)",
        human_size(s.disk_bytes),
        human_size(limits.max_bytes),
        s.disk_bytes as f64 * 100.0 / limits.max_bytes.max(1) as f64
    );
    if s.temp.files > 0 {
        size.push_str(&format!(
            ", {} in {} temp {}",
            human_size(s.temp.bytes),
            s.temp.files,
            if s.temp.files == 1 { "file" } else { "files" }
        ));
    }
    let entries = match limits.max_entries {
        Some(m) => format!("{} of {m}", s.entries),
        None => s.entries.to_string(),
    };
    let rows: Vec<(&str, String)> = vec![
        ("Hits", count(s, Counter::Hits).to_string()),
        ("Misses", count(s, Counter::Misses).to_string()),
        ("Hit rate", rate),
        ("Time saved", human_duration(saved)),
        (
            "Output files restored",
            format!(
                "{} ({})",
                count(s, Counter::RestoredFiles),
                human_size(count(s, Counter::RestoredBytes))
            ),
        ),
        ("Not recorded", String::new()),
        (
            "  non-zero exit",
            count(s, Counter::NotRecordedExit).to_string(),
        ),
        (
            "  killed by signal",
            count(s, Counter::NotRecordedSignal).to_string(),
        ),
        (
            "  input changed",
            count(s, Counter::NotRecordedInput).to_string(),
        ),
        (
            "  output undelivered",
            count(s, Counter::NotRecordedUndelivered).to_string(),
        ),
        (
            "  cache error",
            count(s, Counter::NotRecordedCache).to_string(),
        ),
        (
            "  not traceable",
            count(s, Counter::NotRecordedUntraced).to_string(),
        ),
        ("Errors", count(s, Counter::Errors).to_string()),
        ("Corrupt entries", count(s, Counter::Corrupt).to_string()),
        ("Evicted entries", count(s, Counter::Evicted).to_string()),
        ("Entries", entries),
        ("Size on disk", size),
        ("  hit records", records_line(s)),
        ("Oldest entry", ago(s.oldest_ms)),
        ("Newest entry", ago(s.newest_ms)),
    ];
    let width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let mut out = String::new();
    if let Some(since) = s.since_ms {
        out.push_str(&format!("Counters since {}\n", ago(Some(since))));
    }
    for (label, value) in rows {
        if value.is_empty() {
            out.push_str(&format!("{label}\n"));
        } else {
            out.push_str(&format!("{label:width$}  {value:>8}\n"));
        }
    }
    if !s.top.is_empty() {
        out.push_str("Top commands by time saved\n");
        for t in &s.top {
            out.push_str(&format!(
                "  {:>8}  {:>5} {}  {}\n",
                human_duration(Duration::from_millis(t.saved_ms)),
                t.hits,
                if t.hits == 1 { "hit " } else { "hits" },
                crate::term::quote::printable(&t.display)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_numeric_hits_and_misses() {
        let mut s = StoreStats::default();
        s.counters.insert(Counter::Hits.name().into(), 3);
        s.counters.insert(Counter::Misses.name().into(), 1);
        let v = to_json(&s, Limits::default(), None, &[]);
        assert_eq!(v["hits"], 3);
        assert_eq!(v["remote"]["cooldown"], json!([]));
        assert_eq!(v["misses"], 1);
        assert_eq!(v["hit_rate"], 0.75);
        let text = to_text(&s, Limits::default());
        assert!(text.contains("Hit rate"), "{text}");
        assert!(text.contains("75.0 %"), "{text}");
    }

    #[test]
    fn a_cooling_remote_is_shown() {
        let c = State {
            url: "redis://h".into(),
            failures: 2,
            until_ms: crate::store::now_ms() + 60_000,
            reason: "timed out".into(),
        };
        let s = StoreStats::default();
        let text = remote_text(&s, None, std::slice::from_ref(&c));
        assert!(text.contains("redis://h: cooling down until"), "{text}");
        assert!(text.contains("MEMORUN_REMOTE_RETRY=1"), "{text}");
        let v = to_json(&s, Limits::default(), None, &[c]);
        assert_eq!(v["remote"]["cooldown"][0]["failures"], 2);
        assert_eq!(v["remote"]["cooldown"][0]["active"], true);
    }
}
