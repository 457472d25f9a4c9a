//! Who may connect and do what: TLS, trusted proxies, token keys, anonymous
//! clients and the per-connection and per-address limits, resolved from
//! the file and the flags like the rest of [`ServerConfig`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{FileConfig, ServeArgs, ServerConfig};

impl ServeArgs {
    /// The access settings of `cfg`: the flags' values over the file's.
    pub(super) fn resolve_access(
        &self,
        file: &FileConfig,
        cfg: &mut ServerConfig,
    ) -> anyhow::Result<()> {
        // Files named in the settings file are relative to it.
        let file_dir = self.config.as_deref().and_then(Path::parent);
        let in_file_dir = |d: Option<PathBuf>| {
            d.map(|d| match file_dir {
                Some(base) if d.is_relative() => base.join(d),
                _ => d,
            })
        };
        let cert = self.tls_cert.clone().or(in_file_dir(file.tls_cert.clone()));
        let key = self.tls_key.clone().or(in_file_dir(file.tls_key.clone()));
        match (cert, key) {
            (None, None) => {}
            (Some(cert), Some(key)) => {
                let files = volna_transports::tls::TlsFiles { cert, key };
                // Checked now so a bad file stops the start with its name.
                volna_transports::tls::Tls::load(files.clone(), Duration::from_secs(1))?;
                cfg.tls = Some(files);
            }
            _ => anyhow::bail!("tls_cert and tls_key go together: set both or neither"),
        }
        if let Some(list) = self
            .trusted_proxies
            .clone()
            .or(file.trusted_proxies.clone())
        {
            let nets = list
                .iter()
                .filter(|s| !s.trim().is_empty())
                .map(|s| {
                    s.parse()
                        .map_err(|e: String| anyhow::anyhow!("trusted_proxies: {e}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            cfg.trusted_proxies = volna_transports::proxies::TrustedProxies::new(nets);
        }
        let tokens = &mut cfg.tokens;
        tokens.secret = self.jwt_secret.clone().or(file.jwt_secret.clone());
        tokens.public_key = self.jwt_public_key.clone().or(file.jwt_public_key.clone());
        tokens.jwks = self.jwks.clone().or(file.jwks.clone());
        tokens.jwks_ca = self.jwks_ca.clone().or(file.jwks_ca.clone());
        tokens.audience = self
            .jwt_audience
            .clone()
            .or(file.jwt_audience.clone())
            .unwrap_or_default();
        tokens.issuer = self
            .jwt_issuer
            .clone()
            .or(file.jwt_issuer.clone())
            .unwrap_or_default();
        volna_transports::app::tokens::Tokens::new(tokens).map_err(|e| anyhow::anyhow!(e))?;
        cfg.anonymous = self.anonymous.or(file.anonymous).unwrap_or(true);
        if let Some(n) = self
            .max_rooms_per_connection
            .or(file.max_rooms_per_connection)
        {
            anyhow::ensure!(n >= 1, "max_rooms_per_connection must be at least 1");
            cfg.hub.max_rooms_per_conn = n;
        }
        if let Some(n) = self
            .max_pending_per_connection
            .or(file.max_pending_per_connection)
        {
            anyhow::ensure!(n >= 1, "max_pending_per_connection must be at least 1");
            cfg.hub.max_pending_per_conn = n;
        }
        if let Some(v) = self.http_header_timeout_ms.or(file.http_header_timeout_ms) {
            anyhow::ensure!(v >= 100, "http_header_timeout_ms must be at least 100");
            cfg.http_limits.header_timeout = Duration::from_millis(v);
        }
        if let Some(v) = self.max_header_bytes.or(file.max_header_bytes) {
            anyhow::ensure!(v >= 8192, "max_header_bytes must be at least 8192");
            cfg.http_limits.max_header_bytes = v;
        }
        if let Some(v) = self
            .tcp_first_line_timeout_ms
            .or(file.tcp_first_line_timeout_ms)
        {
            cfg.tcp.first_line_timeout = (v > 0).then(|| Duration::from_millis(v));
        }
        if let Some(v) = self.max_connections_per_ip.or(file.max_connections_per_ip) {
            cfg.ip_limits.max_open = v;
        }
        if let Some(v) = self
            .connections_per_ip_per_second
            .or(file.connections_per_ip_per_second)
        {
            anyhow::ensure!(
                v >= 0.0,
                "connections_per_ip_per_second must not be negative"
            );
            cfg.ip_limits.per_second = v;
            cfg.ip_limits.burst = ((v * 2.0) as u32).max(1);
        }
        if let Some(v) = self.limit_loopback.or(file.limit_loopback) {
            cfg.ip_limits.limit_loopback = v;
        }
        if let Some(v) = self.messages_per_second.or(file.messages_per_second) {
            anyhow::ensure!(v >= 0.0, "messages_per_second must not be negative");
            cfg.hub.rate.per_second = v;
        }
        if let Some(v) = self.messages_burst.or(file.messages_burst) {
            anyhow::ensure!(v >= 1, "messages_burst must be at least 1");
            cfg.hub.rate.burst = v;
        }
        Ok(())
    }
}
