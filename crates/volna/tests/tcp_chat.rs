//! Several TCP clients in two rooms: delivery, ordering, offsets, presence.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test]
async fn messages_reach_exactly_their_room_in_order() {
    let server = start_default().await;
    let mut alice = LineClient::named(&server, "alice", &["red"]).await;
    let mut bob = LineClient::named(&server, "bob", &["red"]).await;
    let mut carol = LineClient::named(&server, "carol", &["blue"]).await;
    let mut dave = LineClient::named(&server, "dave", &["blue", "red"]).await;

    // Presence: alice saw bob and dave arrive; carol saw dave.
    assert_eq!(alice.line().await, "joined red bob 2");
    assert_eq!(alice.line().await, "joined red dave 3");
    assert_eq!(bob.line().await, "joined red dave 3");
    assert_eq!(carol.line().await, "joined blue dave 2");

    // dave's current room is red (joined last); /msg targets blue.
    for i in 0..20 {
        alice.send(&format!("a{i}")).await;
        dave.send(&format!("/msg blue d{i}")).await;
    }
    let mut red_offsets = Vec::new();
    for i in 0..20 {
        let m = parse_msg(&bob.line().await);
        assert_eq!((m.room.as_str(), m.from.as_str()), ("red", "alice"));
        assert_eq!(m.text, format!("a{i}"));
        red_offsets.push(m.offset);
    }
    assert_eq!(
        red_offsets,
        (1..=20).collect::<Vec<u64>>(),
        "offsets count up from 1"
    );

    // The sender gets its own messages as the reply, with the same offsets.
    for i in 0..20 {
        let m = parse_msg(&alice.line().await);
        assert_eq!((m.offset, m.text), (i + 1, format!("a{i}")));
    }
    // carol only ever sees blue; dave sees both rooms, each in order.
    for i in 0..20 {
        let m = parse_msg(&carol.line().await);
        assert_eq!(
            (m.room.as_str(), m.offset, m.text),
            ("blue", i + 1, format!("d{i}"))
        );
    }
    let (mut red, mut blue) = (Vec::new(), Vec::new());
    for _ in 0..40 {
        let m = parse_msg(&dave.line().await);
        if m.room == "red" {
            red.push(m.offset)
        } else {
            blue.push(m.offset)
        }
    }
    assert_eq!(red, (1..=20).collect::<Vec<u64>>());
    assert_eq!(blue, (1..=20).collect::<Vec<u64>>());
    alice.silent(Duration::from_millis(100)).await;
    carol.silent(Duration::from_millis(100)).await;

    // Timestamps are ISO-8601 UTC and never go backwards.
    let m = {
        bob.send("last").await;
        parse_msg(&bob.line().await)
    };
    assert!(m.ts.ends_with('Z') && m.ts.len() == 24, "{}", m.ts);

    // Leaving and disconnecting are announced.
    bob.send("/leave").await;
    assert_eq!(bob.line().await, "ok leave red");
    let (line, _) = alice.until("left").await;
    assert_eq!(line, "left red bob 2");
    drop(dave);
    let (line, _) = carol.until("left").await;
    assert_eq!(line, "left blue dave 1");
    let (line, _) = alice.until("left").await;
    assert_eq!(line, "left red dave 1");
}

#[tokio::test]
async fn who_rooms_history_nick_echo() {
    let server = start_default().await;
    let mut a = LineClient::named(&server, "ann", &["lobby"]).await;
    let mut b = LineClient::named(&server, "ben", &["lobby", "x"]).await;
    assert_eq!(a.line().await, "joined lobby ben 2");
    a.send("/who").await;
    assert_eq!(a.line().await, "ok who lobby ann ben");
    a.send("/rooms").await;
    assert_eq!(a.line().await, "ok rooms lobby:2 x:1");
    a.send("/nick ben").await;
    assert_eq!(a.line().await, "error name-taken the name ben is taken");
    a.send("/echo hello there").await;
    assert_eq!(a.line().await, "ok echo hello there");
    for t in ["one", "two", "three"] {
        a.send(t).await;
        a.line().await;
    }
    b.send("/history 2").await;
    let (hdr, _) = b.until("ok history").await;
    assert_eq!(hdr, "ok history x 0", "ben's current room is x");
    b.send("/leave x").await;
    assert_eq!(b.line().await, "ok leave x current=lobby");
    b.send("/history 2").await;
    assert_eq!(b.line().await, "ok history lobby 2");
    assert_eq!(parse_msg(&b.line().await).text, "two");
    assert_eq!(parse_msg(&b.line().await).text, "three");
    b.send("/quit").await;
    assert_eq!(b.line().await, "bye client-quit: goodbye");
    assert_eq!(b.try_line(WAIT).await, None, "closed after /quit");
}

#[tokio::test]
async fn message_without_a_room_is_an_error_not_silence() {
    let server = start_default().await;
    let mut a = LineClient::connect(&server).await;
    a.send("hello?").await;
    assert_eq!(
        a.line().await,
        "error not-in-room join a room first: /join ROOM"
    );
    a.send("/msg nowhere hi").await;
    assert_eq!(a.line().await, "error no-such-room no room named nowhere");
    let mut b = LineClient::named(&server, "b", &["here"]).await;
    a.send("/msg here hi").await;
    assert_eq!(a.line().await, "error not-member you are not in room here");
    b.silent(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn final_line_without_newline_is_answered() {
    let server = start_default().await;
    let mut a = LineClient::connect(&server).await;
    a.send_raw(b"/echo no newline").await;
    // Answered after the partial-line wait even though the client keeps
    // the connection open...
    assert_eq!(a.line().await, "ok echo no newline");
    // ...and at once when the client half-closes.
    a.send_raw(b"/echo at eof").await;
    use tokio::io::AsyncWriteExt;
    a.writer.shutdown().await.unwrap();
    assert_eq!(a.line().await, "ok echo at eof");
    assert_eq!(a.try_line(WAIT).await, None);
}
