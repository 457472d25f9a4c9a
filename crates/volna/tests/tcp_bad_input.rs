//! Bad input gets a clear error line; the connection and the server go on.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;
use volna::config::ServerConfig;
use volna_hub::Stats;

#[tokio::test]
async fn over_long_line_is_refused_and_the_connection_stays_usable() {
    let mut config = ServerConfig::default();
    config.tcp.max_line = 100;
    let server = start(config).await;
    let mut a = LineClient::named(&server, "a", &["r"]).await;
    let long = "y".repeat(5000);
    a.send(&long).await;
    assert_eq!(
        a.line().await,
        "error line-too-long line is longer than 100 bytes"
    );
    // Sent in pieces, still one error, and the next line works.
    a.send_raw("z".repeat(150).as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    a.send_raw("z".repeat(150).as_bytes()).await;
    a.send_raw(b"\nshort one\n").await;
    assert_eq!(
        a.line().await,
        "error line-too-long line is longer than 100 bytes"
    );
    assert_eq!(parse_msg(&a.line().await).text, "short one");
    // Exactly at the limit is fine.
    let exact = "e".repeat(100);
    a.send(&format!("/echo {}", &exact[6..])).await;
    assert_eq!(a.line().await, format!("ok echo {}", &exact[6..]));
}

#[tokio::test]
async fn invalid_utf8_unknown_commands_and_bad_arguments() {
    let server = start_default().await;
    let mut a = LineClient::named(&server, "a", &["r"]).await;
    a.send_raw(b"caf\xc3\x28 au lait\n").await;
    assert_eq!(
        a.line().await,
        "error invalid-utf8 line is not valid UTF-8 (byte 3)"
    );
    a.send("/teleport mars").await;
    assert_eq!(
        a.line().await,
        "error unknown-command unknown command /teleport (try /help)"
    );
    a.send("/join").await;
    assert_eq!(
        a.line().await,
        "error missing-argument /join needs a room name"
    );
    a.send("/join two words").await;
    let l = a.line().await;
    assert!(l.starts_with("error bad-name name \"two words\""), "{l}");
    a.send("/nick").await;
    assert_eq!(a.line().await, "error missing-argument /nick needs a name");
    a.send_raw(b"bell\x07\n").await;
    assert_eq!(
        a.line().await,
        "error control-characters line contains control characters"
    );
    a.send("/history lots").await;
    assert!(a.line().await.starts_with("error bad-argument"));
    a.send("/help").await;
    assert_eq!(a.line().await, "ok help commands:");
    // Still a working member of its room.
    a.send("still here").await;
    let (line, help) = a.until("msg ").await;
    assert!(help.iter().any(|l| l.contains("/join ROOM")), "{help:?}");
    assert_eq!(parse_msg(&line).text, "still here");
    let bad = Stats::get(&server.hub().stats().bad_input);
    assert_eq!(bad, 7, "each refused line is counted");
}

#[tokio::test]
async fn abrupt_disconnects_mid_line_do_not_disturb_others() {
    let server = start_default().await;
    let mut watcher = LineClient::named(&server, "watcher", &["r"]).await;
    for i in 0..50 {
        let mut c = LineClient::named(&server, &format!("ghost{i}"), &["r"]).await;
        c.send_raw(b"half a line with no end").await;
        if i % 2 == 0 {
            // Reset instead of a clean close.
            let stream = c.writer.reunite(c.reader.into_inner()).unwrap();
            stream.set_zero_linger().unwrap();
            drop(stream);
        } else {
            c.writer.shutdown().await.unwrap();
            drop(c);
        }
    }
    // The server is still serving: new clients chat normally.
    let mut fresh = LineClient::named(&server, "fresh", &["r"]).await;
    fresh.send("alive").await;
    let (line, skipped) = watcher.until("msg r").await;
    assert!(skipped
        .iter()
        .all(|l| l.starts_with("joined") || l.starts_with("left")));
    let m = parse_msg(&line);
    // A half line from a clean half-close still counts as a final line.
    assert!(
        m.text == "half a line with no end" || m.text == "alive",
        "{line}"
    );
    let (line, _) = watcher.until("msg r").await;
    let _ = line;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.hub().connection_count(), 2);
}
