//! `state/handler.conf`: the handler's settings, written by `coresnap install` and `coresnapd`
//! from `coresnap.conf` (so the handler never parses the user's INI file, and a bad edit there
//! cannot stop crashes from being spooled). One `key=value` per line, `#` starts a comment.
//!
//! ```text
//! quota=10%            # dump.quota: keep this much of the file system free (or a byte count)
//! ignore_limit=0       # 1: spool even when the process's core size limit is 0
//! env=LANG,TZ          # environment names copied into the metadata
//! rate_burst=10        # per executable: at most this many cores ...
//! rate_window=60       # ... per this many seconds (rate_burst=0: no limit)
//! owner=998:998        # uid:gid that owns spooled cores (the unprivileged analysis user)
//! only_under=/opt/app/ # spool only executables under this folder ...
//! others=core          # ... and give the rest the kernel's `core` (or `drop` them)
//! ```
//!
//! A line the handler does not understand is reported (the caller logs it) and skipped; the
//! default stands for that key.

/// How much free space the archive's file system must keep (`dump.quota`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Quota {
    /// Percent of the file system's size, 0–100.
    Percent(f64),
    Bytes(u64),
}

impl Quota {
    pub fn parse(text: &str) -> Option<Quota> {
        let text = text.trim();
        if let Some(percent) = text.strip_suffix('%') {
            let value: f64 = percent.trim().parse().ok()?;
            return (value.is_finite() && (0.0..=100.0).contains(&value))
                .then_some(Quota::Percent(value));
        }
        text.parse().ok().map(Quota::Bytes)
    }

    /// The free bytes this quota requires on a file system of `total` bytes with blocks of
    /// `block` bytes, rounded up to the next block as the vendor documents.
    pub fn required_free(self, total: u64, block: u64) -> u64 {
        let raw = match self {
            Quota::Bytes(n) => n,
            // f64 is exact enough here: a percent of a size, rounded up.
            Quota::Percent(p) => ((total as f64) * p / 100.0).ceil() as u64,
        };
        let block = block.max(1);
        raw.div_ceil(block).saturating_mul(block)
    }
}

/// What to do with crashes outside `only_under`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Others {
    /// Write `core` (or `core.<pid>` when `kernel.core_uses_pid` is set) in the crashing
    /// process's working directory, as core_pattern `core` would.
    Core,
    /// Do nothing.
    Drop,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HandlerConf {
    pub quota: Option<Quota>,
    pub ignore_limit: bool,
    pub env_allowlist: Vec<String>,
    pub rate_burst: u32,
    pub rate_window_secs: u64,
    pub owner: Option<(u32, u32)>,
    pub only_under: Option<String>,
    pub others: Others,
}

/// Environment names copied by default: what helps to read a crash and is never a secret.
pub const DEFAULT_ENV_ALLOWLIST: &[&str] = &[
    "LANG",
    "LC_ALL",
    "TZ",
    "GOTRACEBACK",
    "GOMAXPROCS",
    "LD_LIBRARY_PATH",
    "LD_PRELOAD",
];

impl Default for HandlerConf {
    fn default() -> Self {
        HandlerConf {
            quota: None,
            ignore_limit: false,
            env_allowlist: DEFAULT_ENV_ALLOWLIST
                .iter()
                .map(|s| s.to_string())
                .collect(),
            rate_burst: 10,
            rate_window_secs: 60,
            owner: None,
            only_under: None,
            others: Others::Core,
        }
    }
}

impl HandlerConf {
    /// Parses the file's text; returns the settings and one sentence per line it skipped.
    pub fn parse(text: &str) -> (HandlerConf, Vec<String>) {
        let mut conf = HandlerConf::default();
        let mut problems = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line_number = index + 1;
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                problems.push(format!(
                    "handler.conf:{line_number}: '{line}' is not key=value"
                ));
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            let ok = match key {
                "quota" => {
                    if value.is_empty() || value == "none" {
                        conf.quota = None;
                        true
                    } else {
                        Quota::parse(value).map(|q| conf.quota = Some(q)).is_some()
                    }
                }
                "ignore_limit" => parse_bool(value).map(|b| conf.ignore_limit = b).is_some(),
                "env" => {
                    conf.env_allowlist = value
                        .split([',', ' '])
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect();
                    true
                }
                "rate_burst" => value.parse().map(|n| conf.rate_burst = n).is_ok(),
                "rate_window" => value.parse().map(|n| conf.rate_window_secs = n).is_ok(),
                "owner" => value
                    .split_once(':')
                    .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)))
                    .map(|ids| conf.owner = Some(ids))
                    .is_some(),
                "only_under" => {
                    conf.only_under = (!value.is_empty()).then(|| value.to_string());
                    true
                }
                "others" => match value {
                    "core" => {
                        conf.others = Others::Core;
                        true
                    }
                    "drop" => {
                        conf.others = Others::Drop;
                        true
                    }
                    _ => false,
                },
                _ => {
                    problems.push(format!("handler.conf:{line_number}: unknown key '{key}'"));
                    continue;
                }
            };
            if !ok {
                problems.push(format!(
                    "handler.conf:{line_number}: '{value}' is not a valid value for {key}"
                ));
            }
        }
        (conf, problems)
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_key_and_reports_bad_lines() {
        let (conf, problems) = HandlerConf::parse(
            "# written by coresnapd\nquota=10%\nignore_limit=1\nenv=LANG, TZ\nrate_burst=3\nrate_window=5\n\
             owner=998:997\nonly_under=/tmp/t/\nothers=drop\nbogus=1\nrate_burst=many\nnot a pair\n",
        );
        assert_eq!(conf.quota, Some(Quota::Percent(10.0)));
        assert!(conf.ignore_limit);
        assert_eq!(conf.env_allowlist, vec!["LANG", "TZ"]);
        assert_eq!(conf.rate_burst, 3);
        assert_eq!(conf.rate_window_secs, 5);
        assert_eq!(conf.owner, Some((998, 997)));
        assert_eq!(conf.only_under.as_deref(), Some("/tmp/t/"));
        assert_eq!(conf.others, Others::Drop);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains(":10:"), "{problems:?}");
    }

    #[test]
    fn quota_rounds_up_to_a_block() {
        assert_eq!(Quota::Percent(10.0).required_free(1_000_000, 4096), 102_400);
        assert_eq!(Quota::Bytes(1).required_free(1_000_000, 4096), 4096);
        assert_eq!(Quota::parse("101%"), None);
        assert_eq!(Quota::parse("12345"), Some(Quota::Bytes(12345)));
    }
}
