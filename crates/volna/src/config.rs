//! Configuration: built-in defaults, then an optional TOML file, then
//! environment variables and command-line flags (clap reads both; a flag
//! beats its variable).
//!
//! ```toml
//! # volna.toml — every key is optional
//! tcp_addr = "127.0.0.1:7000"
//! http_addr = "127.0.0.1:3000"
//! log = "info"
//! max_line = 4096
//! queue_frames = 1024
//! queue_bytes = 4194304
//! history = 100
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use volna_hub::{HubConfig, OutboxLimits};
use volna_transports::tcp::TcpConfig;

/// Everything `volna serve` needs, after merging every source.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where the TCP line protocol listens. Defaults to `127.0.0.1:7000`.
    pub tcp_addr: String,
    /// Where HTTP (health, later Socket.IO and WebSocket) listens. Defaults
    /// to `127.0.0.1:3000`.
    pub http_addr: String,
    pub tcp: TcpConfig,
    pub hub: HubConfig,
    /// How long shutdown waits for connections to say goodbye. Defaults to 2 s.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            tcp_addr: "127.0.0.1:7000".into(),
            http_addr: "127.0.0.1:3000".into(),
            tcp: TcpConfig::default(),
            hub: HubConfig::default(),
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// The optional settings file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub tcp_addr: Option<String>,
    pub http_addr: Option<String>,
    pub log: Option<String>,
    pub max_line: Option<usize>,
    pub queue_frames: Option<usize>,
    pub queue_bytes: Option<usize>,
    pub history: Option<usize>,
}

impl FileConfig {
    /// Reads and parses a TOML settings file.
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", path.display()))
    }
}

/// Flags and environment variables of `volna serve` (all optional: unset
/// ones fall back to the file, then to the defaults).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ServeArgs {
    /// TOML settings file.
    #[arg(long, env = "VOLNA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address for the raw TCP line protocol [default: 127.0.0.1:7000].
    #[arg(long, env = "VOLNA_TCP_ADDR")]
    pub tcp_addr: Option<String>,
    /// Address for HTTP: health, Socket.IO, WebSocket, the chat page [default: 127.0.0.1:3000].
    #[arg(long, env = "VOLNA_HTTP_ADDR")]
    pub http_addr: Option<String>,
    /// Log filter, e.g. `info`, `debug`, `volna_transports=trace` [default: info].
    #[arg(long, env = "VOLNA_LOG")]
    pub log: Option<String>,
    /// Longest TCP line in bytes [default: 4096].
    #[arg(long, env = "VOLNA_MAX_LINE")]
    pub max_line: Option<usize>,
    /// Most frames queued per connection before it is dropped as a slow consumer [default: 1024].
    #[arg(long, env = "VOLNA_QUEUE_FRAMES")]
    pub queue_frames: Option<usize>,
    /// Most bytes queued per connection before it is dropped as a slow consumer [default: 4194304].
    #[arg(long, env = "VOLNA_QUEUE_BYTES")]
    pub queue_bytes: Option<usize>,
    /// Messages kept per room for history [default: 100].
    #[arg(long, env = "VOLNA_HISTORY")]
    pub history: Option<usize>,
}

impl ServeArgs {
    /// Merges defaults, the file (if any), then these flags. Returns the
    /// server settings and the log filter.
    pub fn resolve(&self) -> anyhow::Result<(ServerConfig, String)> {
        let file = match &self.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let mut cfg = ServerConfig::default();
        if let Some(v) = self.tcp_addr.clone().or(file.tcp_addr) {
            cfg.tcp_addr = v;
        }
        if let Some(v) = self.http_addr.clone().or(file.http_addr) {
            cfg.http_addr = v;
        }
        if let Some(v) = self.max_line.or(file.max_line) {
            anyhow::ensure!(v >= 16, "max_line must be at least 16 bytes");
            cfg.tcp.max_line = v;
        }
        let defaults = OutboxLimits::default();
        cfg.tcp.outbox = OutboxLimits {
            max_frames: self
                .queue_frames
                .or(file.queue_frames)
                .unwrap_or(defaults.max_frames)
                .max(1),
            max_bytes: self
                .queue_bytes
                .or(file.queue_bytes)
                .unwrap_or(defaults.max_bytes)
                .max(1024),
        };
        if let Some(v) = self.history.or(file.history) {
            cfg.hub.history_len = v;
        }
        let log = self
            .log
            .clone()
            .or(file.log)
            .unwrap_or_else(|| "info".into());
        Ok((cfg, log))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_beat_defaults() {
        let dir = std::env::temp_dir().join(format!("volna-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("volna.toml");
        std::fs::write(
            &path,
            "tcp_addr = \"127.0.0.1:1\"\nhistory = 5\nmax_line = 100\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            tcp_addr: Some("127.0.0.1:2".into()),
            ..Default::default()
        };
        let (cfg, log) = args.resolve().unwrap();
        assert_eq!(cfg.tcp_addr, "127.0.0.1:2");
        assert_eq!(cfg.http_addr, "127.0.0.1:3000");
        assert_eq!(cfg.hub.history_len, 5);
        assert_eq!(cfg.tcp.max_line, 100);
        assert_eq!(log, "info");
        std::fs::write(&path, "nonsense = 1\n").unwrap();
        let err = args.resolve().unwrap_err().to_string();
        assert!(err.contains("unknown field"), "{err}");
    }
}
