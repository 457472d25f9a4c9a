//! A Python client in the style of the source notes (socket, connect, send,
//! recv, print) talks to volna, and a second one sees its message.

mod common;

use std::process::Command;

use common::*;

fn script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/notes_client.py")
}

#[tokio::test]
async fn python_socket_client_chats_with_volna() {
    let server = start_default().await;
    let mut watcher = LineClient::named(&server, "watcher", &["notes"]).await;
    let addr = server.tcp_addr;
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script())
            .arg(addr.ip().to_string())
            .arg(addr.port().to_string())
            .args([
                "/nick py",
                "/join notes",
                "привет из Python",
                "/echo answer me",
            ])
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "python failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("Пришло от сервера: welcome volna"),
        "{stdout}"
    );
    assert!(stdout.contains("ok nick py"), "{stdout}");
    assert!(stdout.contains("ok join notes py watcher"), "{stdout}");
    assert!(stdout.contains("py: привет из Python"), "{stdout}");
    assert!(stdout.contains("ok echo answer me"), "{stdout}");

    assert_eq!(watcher.line().await, "joined notes py 2");
    let m = parse_msg(&watcher.line().await);
    assert_eq!(
        (m.from.as_str(), m.text.as_str()),
        ("py", "привет из Python")
    );
    assert_eq!(watcher.line().await, "left notes py 1");
}
