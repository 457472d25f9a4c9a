//! Property tests of the TCP line protocol: any input parses to a command or
//! a typed error, never a panic; the splitter never loses or invents bytes.

use proptest::prelude::*;
use volna_protocols::line::{parse, Command, Item, LineSplitter};

proptest! {
    #[test]
    fn any_bytes_parse_or_error(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn any_text_parses_or_errors(s in "\\PC{0,200}") {
        let _ = parse(s.as_bytes());
        let slashed = format!("/{s}");
        let _ = parse(slashed.as_bytes());
    }

    #[test]
    fn plain_text_is_a_message(s in "[a-zA-Z0-9 .,!?é]{1,100}") {
        prop_assume!(!s.trim().is_empty());
        prop_assert_eq!(parse(s.as_bytes()).unwrap(), Command::Say(s.clone()));
    }

    /// Lines within the limit come out exactly as they went in, however the
    /// stream is cut into reads; longer ones become one TooLong each.
    #[test]
    fn splitter_preserves_lines(
        lines in proptest::collection::vec("[^\n\r]{0,40}", 0..20),
        cuts in proptest::collection::vec(1usize..17, 1..50),
        max in 1usize..45,
    ) {
        let stream: Vec<u8> = lines.iter().flat_map(|l| {
            let mut v = l.as_bytes().to_vec();
            v.push(b'\n');
            v
        }).collect();
        let mut s = LineSplitter::new(max);
        let mut got: Vec<Option<Vec<u8>>> = Vec::new();
        let mut pos = 0;
        let mut i = 0;
        while pos < stream.len() {
            let n = cuts[i % cuts.len()].min(stream.len() - pos);
            s.push(&stream[pos..pos + n]);
            pos += n;
            i += 1;
            while let Some(item) = s.next_item() {
                got.push(match item { Item::Line(l) => Some(l.to_vec()), Item::TooLong => None });
            }
        }
        let want: Vec<Option<Vec<u8>>> = lines.iter().map(|l| {
            (l.len() <= max).then(|| l.as_bytes().to_vec())
        }).collect();
        prop_assert_eq!(got, want);
        prop_assert!(s.is_empty());
    }

    #[test]
    fn splitter_survives_garbage(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..30), max in 1usize..100) {
        let mut s = LineSplitter::new(max);
        for c in &chunks {
            s.push(c);
            while let Some(item) = s.next_item() {
                if let Item::Line(l) = item {
                    prop_assert!(l.len() <= max);
                    let _ = parse(l);
                }
            }
        }
    }
}
