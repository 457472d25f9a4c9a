//! The options every `volna bench` scenario takes (`--url`, `--pid`,
//! `--room`, `--json`, …), flattened into each [`super::Scenario`] variant.

/// Options shared by every scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Target: socketio://HOST:PORT (Socket.IO v4 at /socket.io/), ws://HOST:PORT/ws (volna JSON)
    /// or tcp://HOST:PORT (volna lines).
    #[arg(long, default_value = "socketio://127.0.0.1:3000")]
    pub url: String,
    /// The server's process id: adds its CPU time and memory to the report.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Room to use.
    #[arg(long, default_value = "bench")]
    pub room: String,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Connections opened at once while setting up.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Spread client sockets over this many source addresses 127.0.0.1, 127.0.0.2, … (0: one
    /// per 10 000 clients of each process, each process on its own addresses: Linux gives a
    /// socket bound before connecting a port from half its ephemeral range, ~14k per address).
    #[arg(long, default_value_t = 0)]
    pub source_ips: u8,
    /// Members spread round robin over these targets (comma-separated), e.g. every node of a
    /// cluster; replaces --url and --spread-url.
    #[arg(long, value_delimiter = ',')]
    pub urls: Vec<String>,
    /// Members spread over this many rooms ROOM-0 … ROOM-(K-1) (1: all in ROOM); each room
    /// gets its share of the messages.
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Run the clients in this many processes (each on its own source addresses) and merge
    /// their reports: one process holds ~20k connections at most.
    #[arg(long, default_value_t = 1)]
    pub processes: usize,
    /// Set by `--processes` on the processes it starts: this one is worker K.
    #[arg(long, hide = true)]
    pub worker: Option<usize>,
    /// Connect every second member to this URL instead: another node of the same cluster
    /// (docs/cluster.md), so half the room is reached across nodes.
    #[arg(long)]
    pub spread_url: Option<String>,
    /// A token every client presents when it connects (Socket.IO auth, /ws ?token=, TCP /auth):
    /// for servers that check JWTs.
    #[arg(long)]
    pub token: Option<String>,
}

/// Clients one source address takes before the next is used: `bind` to
/// port 0 draws from half of the ephemeral range (the other half is left to
/// `connect`), ~14k ports with Linux's default range.
const PER_SOURCE_IP: usize = 10_000;

impl Common {
    /// The targets, in the order members are spread over them.
    pub(super) fn targets(&self) -> anyhow::Result<Vec<super::client::Target>> {
        let urls: Vec<&str> = if self.urls.is_empty() {
            std::iter::once(self.url.as_str())
                .chain(self.spread_url.as_deref())
                .collect()
        } else {
            self.urls.iter().map(String::as_str).collect()
        };
        urls.into_iter()
            .map(|u| {
                Ok(super::client::Target {
                    token: self.token.clone(),
                    ..super::client::Target::parse(u)?
                })
            })
            .collect()
    }

    /// The first target (`--url`, or the first of `--urls`), for scenarios
    /// with one.
    pub(super) fn target(&self) -> anyhow::Result<super::client::Target> {
        Ok(self.targets()?.swap_remove(0))
    }

    /// This process's share of `n` clients: the first global index and how
    /// many (all of them unless it is a worker).
    pub(super) fn share(&self, n: usize) -> (usize, usize) {
        let Some(k) = self.worker else {
            return (0, n);
        };
        let p = self.processes.max(1);
        let base = n / p;
        let extra = n % p;
        (k * base + k.min(extra), base + usize::from(k < extra))
    }

    /// The room of the member with global index `g`.
    pub(super) fn room_of(&self, g: usize) -> String {
        if self.rooms <= 1 {
            self.room.clone()
        } else {
            format!("{}-{}", self.room, g % self.rooms)
        }
    }

    /// The source address of this process's `j`-th of `count` clients:
    /// none (the kernel's choice) for a single process with few clients;
    /// else `127.W.0.X`, W the worker (0 alone), X cycling over enough
    /// addresses for `count`.
    pub(super) fn source_ip(&self, j: usize, count: usize) -> Option<std::net::IpAddr> {
        let spread = match self.source_ips {
            0 => count.div_ceil(PER_SOURCE_IP).max(1),
            n => usize::from(n),
        };
        if spread <= 1 && self.worker.is_none() {
            return None;
        }
        let w = self.worker.map_or(0, |k| k + 1).min(255) as u8;
        let last = 1 + (j % spread.min(254)) as u8;
        Some(std::net::IpAddr::from([127, w, 0, last]))
    }
}

/// Microseconds since the Unix epoch: the clock payloads are stamped with,
/// the same in every process of a run.
pub(super) fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Common;

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        common: Common,
    }

    fn common(args: &[&str]) -> Common {
        Args::parse_from(std::iter::once("bench").chain(args.iter().copied())).common
    }

    #[test]
    fn shares_cover_every_client_once() {
        let mut next = 0;
        for k in 0..3 {
            let c = common(&["--processes", "3", "--worker", &k.to_string()]);
            let (start, count) = c.share(10);
            assert_eq!(start, next);
            next += count;
        }
        assert_eq!(next, 10);
        assert_eq!(common(&[]).share(10), (0, 10));
    }

    #[test]
    fn source_addresses_are_per_worker_and_spread() {
        let alone = common(&[]);
        assert_eq!(alone.source_ip(5, 1000), None);
        assert_eq!(alone.source_ip(1, 15_000).unwrap().to_string(), "127.0.0.2");
        let w = common(&["--processes", "4", "--worker", "2"]);
        assert_eq!(w.source_ip(7, 1000).unwrap().to_string(), "127.3.0.1");
        assert_eq!(w.source_ip(1, 15_000).unwrap().to_string(), "127.3.0.2");
        assert_eq!(w.source_ip(2, 15_000).unwrap().to_string(), "127.3.0.1");
    }

    #[test]
    fn targets_and_rooms() {
        let c = common(&[
            "--urls",
            "tcp://127.0.0.1:1,tcp://127.0.0.1:2",
            "--rooms",
            "3",
        ]);
        let t = c.targets().unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].addr.port(), 2);
        assert_eq!(c.room_of(4), "bench-1");
        assert_eq!(common(&[]).room_of(4), "bench");
    }
}
