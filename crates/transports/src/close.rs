//! Why a connection closes → the WebSocket close code it is told: one table
//! for every WebSocket transport (`/ws`, Engine.IO over WebSocket).

use volna_hub::CloseReason;

/// The close code (RFC 6455 §7.4.1) for closing because of `reason`.
///
/// | reason                                   | code |
/// |------------------------------------------|------|
/// | the client quit, the transport went away | 1000 |
/// | server shutdown, timeout                 | 1001 (going away) |
/// | server restart (a drain)                 | 1012 (service restart) |
/// | protocol error: `too-large: …`           | 1009 (message too big) |
/// | protocol error: `bad-utf8: …`            | 1007 (invalid payload) |
/// | any other protocol error                 | 1002 |
/// | slow consumer                            | 1008 (policy) |
/// | disconnected by the server (API, hook)   | its code, 3000–4999 |
pub fn websocket_close_code(reason: &CloseReason) -> u16 {
    match reason {
        CloseReason::Disconnected { code, .. } => (*code).clamp(3000, 4999),
        CloseReason::ClientQuit | CloseReason::TransportClosed => 1000,
        CloseReason::ServerShutdown | CloseReason::Timeout => 1001,
        CloseReason::ServerRestart => 1012,
        CloseReason::SlowConsumer { .. } => 1008,
        CloseReason::ProtocolError(why) => {
            if why.starts_with("too-large") {
                1009
            } else if why.starts_with("bad-utf8") {
                1007
            } else {
                1002
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_code_per_reason() {
        assert_eq!(websocket_close_code(&CloseReason::Timeout), 1001);
        assert_eq!(websocket_close_code(&CloseReason::ServerShutdown), 1001);
        assert_eq!(websocket_close_code(&CloseReason::ServerRestart), 1012);
        assert_eq!(
            websocket_close_code(&CloseReason::SlowConsumer {
                frames: 1,
                bytes: 1
            }),
            1008
        );
        assert_eq!(
            websocket_close_code(&CloseReason::ProtocolError("too-large: x".into())),
            1009
        );
        assert_eq!(
            websocket_close_code(&CloseReason::ProtocolError("bad-utf8: x".into())),
            1007
        );
        assert_eq!(
            websocket_close_code(&CloseReason::ProtocolError("invalid packet".into())),
            1002
        );
    }
}
