//! What an outbox carries ([`Frame`]) and why a connection is closed
//! ([`CloseReason`]).

use std::fmt;

use bytes::Bytes;

/// One unit a transport writes: a text or a binary frame. For the TCP line
/// protocol a text frame is one line including its `\n`; for WebSocket
/// transports it is one WebSocket message; for Engine.IO it is one encoded
/// Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// UTF-8 text (the producer guarantees it; it is not checked here).
    Text(Bytes),
    /// Arbitrary bytes.
    Binary(Bytes),
}

impl Frame {
    /// The payload bytes.
    pub fn bytes(&self) -> &Bytes {
        match self {
            Frame::Text(b) | Frame::Binary(b) => b,
        }
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.bytes().len()
    }

    /// True for an empty payload.
    pub fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }

    /// A text frame from a `String`.
    pub fn text(s: impl Into<String>) -> Frame {
        Frame::Text(Bytes::from(s.into()))
    }
}

/// Why a connection was closed by the server side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// Its outgoing queue overflowed: it does not read fast enough.
    SlowConsumer {
        /// Frames queued when the push that overflowed arrived.
        frames: usize,
        /// Payload bytes queued at that moment.
        bytes: usize,
    },
    /// The server is shutting down.
    ServerShutdown,
    /// The server is restarting (a rolling restart): reconnect, to another
    /// node of the cluster; a recoverable session is kept.
    ServerRestart,
    /// The client asked to leave.
    ClientQuit,
    /// The client broke the protocol in a way that cannot be recovered.
    ProtocolError(String),
    /// The client stopped answering heartbeats.
    Timeout,
    /// The transport moved elsewhere or the peer went away.
    TransportClosed,
    /// The server disconnected it on purpose (the server API, a backend
    /// hook), with a code for the client (a WebSocket close code, 3000–4999)
    /// and a reason.
    Disconnected {
        /// The code: 3000–4999.
        code: u16,
        /// Why, for the client.
        reason: String,
    },
}

impl CloseReason {
    /// Every [`code`](Self::code), in the order of [`slot`](Self::slot).
    pub const CODES: [&'static str; 8] = [
        "slow-consumer",
        "server-shutdown",
        "server-restart",
        "client-quit",
        "protocol-error",
        "timeout",
        "transport-closed",
        "disconnected",
    ];

    /// Its code's place in [`CODES`](Self::CODES), for counters.
    pub fn slot(&self) -> usize {
        match self {
            CloseReason::SlowConsumer { .. } => 0,
            CloseReason::ServerShutdown => 1,
            CloseReason::ServerRestart => 2,
            CloseReason::ClientQuit => 3,
            CloseReason::ProtocolError(_) => 4,
            CloseReason::Timeout => 5,
            CloseReason::TransportClosed => 6,
            CloseReason::Disconnected { .. } => 7,
        }
    }

    /// A short, stable code, e.g. `slow-consumer`.
    pub fn code(&self) -> &'static str {
        match self {
            CloseReason::SlowConsumer { .. } => "slow-consumer",
            CloseReason::ServerShutdown => "server-shutdown",
            CloseReason::ServerRestart => "server-restart",
            CloseReason::ClientQuit => "client-quit",
            CloseReason::ProtocolError(_) => "protocol-error",
            CloseReason::Timeout => "timeout",
            CloseReason::TransportClosed => "transport-closed",
            CloseReason::Disconnected { .. } => "disconnected",
        }
    }

    /// Whether frames still queued are dropped (true) or flushed before the
    /// connection closes (false).
    pub fn discards_queue(&self) -> bool {
        matches!(self, CloseReason::SlowConsumer { .. })
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::SlowConsumer { frames, bytes } => write!(
                f,
                "slow-consumer: you did not read fast enough and your outgoing queue \
                 overflowed ({frames} frames, {bytes} bytes queued); disconnected"
            ),
            CloseReason::ServerShutdown => f.write_str("server-shutdown: the server is going away"),
            CloseReason::ServerRestart => f.write_str(
                "server-restart: the server is restarting; reconnect, another node will serve you",
            ),
            CloseReason::ClientQuit => f.write_str("client-quit: goodbye"),
            CloseReason::ProtocolError(why) => write!(f, "protocol-error: {why}"),
            CloseReason::Timeout => f.write_str("timeout: no heartbeat from the client"),
            CloseReason::TransportClosed => f.write_str("transport-closed"),
            CloseReason::Disconnected { reason, .. } => write!(f, "disconnected: {reason}"),
        }
    }
}
