//! RESP2/RESP3: the request parser (inline and multibulk, bounded) and the reply encoder.
//!
//! Hand-written rather than `redis-protocol`: the port only ever reads arrays of bulk
//! strings and inline lines, and must answer malformed input with Redis's own
//! `Protocol error: ...` texts and limits; a few dozen lines do that exactly, where the
//! codec crate would add a frame model to translate from and its own error wording.

use bytes::{Buf, BytesMut};

/// Most arguments one request may carry (Sentinel's longest command has 6).
pub const MAX_ARGS: usize = 64;
/// Largest single argument, and largest inline request line.
pub const MAX_ARG_BYTES: usize = 64 * 1024;

/// One reply value, encoded for the connection's protocol by [`Reply::encode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+text`
    Simple(String),
    /// `-text`: the text includes its code (`ERR ...`, `NOAUTH ...`).
    Error(String),
    /// `$n` bulk string.
    Bulk(Vec<u8>),
    /// `:n`
    Int(i64),
    /// `*n`
    Array(Vec<Reply>),
    /// RESP2 `*-1`, RESP3 `_`.
    NullArray,
    /// RESP2 `$-1`, RESP3 `_`.
    NullBulk,
    /// RESP3 `%n`; RESP2 a flat array of keys and values.
    Map(Vec<(Reply, Reply)>),
    /// RESP3 `>n`; RESP2 an ordinary array (pub/sub messages and confirmations).
    Push(Vec<Reply>),
}

impl Reply {
    /// A bulk string from text.
    pub fn bulk(text: impl AsRef<[u8]>) -> Reply {
        Reply::Bulk(text.as_ref().to_vec())
    }

    /// An `ERR` error; `\r` and `\n` become spaces, as Redis does, so the reply stays one line.
    pub fn err(text: impl AsRef<str>) -> Reply {
        Reply::error_with_code(&format!("ERR {}", text.as_ref()))
    }

    /// An error whose text already starts with its code (`NOAUTH ...`).
    pub fn error_with_code(text: &str) -> Reply {
        Reply::Error(text.replace(['\r', '\n'], " "))
    }

    /// A map whose keys and values are all bulk strings (Sentinel's records).
    pub fn bulk_map<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Reply {
        Reply::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (Reply::bulk(k), Reply::bulk(v)))
                .collect(),
        )
    }

    /// Appends the wire form for protocol `proto` (2 or 3).
    pub fn encode(&self, proto: u8, out: &mut Vec<u8>) {
        let resp3 = proto >= 3;
        match self {
            Reply::Simple(s) => push_line(out, b'+', s.as_bytes()),
            Reply::Error(s) => push_line(out, b'-', s.as_bytes()),
            Reply::Bulk(b) => {
                push_line(out, b'$', b.len().to_string().as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Int(n) => push_line(out, b':', n.to_string().as_bytes()),
            Reply::NullArray if resp3 => out.extend_from_slice(b"_\r\n"),
            Reply::NullArray => out.extend_from_slice(b"*-1\r\n"),
            Reply::NullBulk if resp3 => out.extend_from_slice(b"_\r\n"),
            Reply::NullBulk => out.extend_from_slice(b"$-1\r\n"),
            Reply::Array(items) => encode_items(out, b'*', items, proto),
            Reply::Push(items) => encode_items(out, if resp3 { b'>' } else { b'*' }, items, proto),
            Reply::Map(pairs) => {
                if resp3 {
                    push_line(out, b'%', pairs.len().to_string().as_bytes());
                } else {
                    push_line(out, b'*', (pairs.len() * 2).to_string().as_bytes());
                }
                for (k, v) in pairs {
                    k.encode(proto, out);
                    v.encode(proto, out);
                }
            }
        }
    }
}

fn push_line(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    out.extend_from_slice(body);
    out.extend_from_slice(b"\r\n");
}

fn encode_items(out: &mut Vec<u8>, tag: u8, items: &[Reply], proto: u8) {
    push_line(out, tag, items.len().to_string().as_bytes());
    for item in items {
        item.encode(proto, out);
    }
}

/// One request's arguments.
pub type Args = Vec<Vec<u8>>;

/// A malformed request: the text Redis replies with before closing the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Protocol error: {0}")]
pub struct ProtocolError(pub String);

/// Takes one complete request off the front of `buf`.
///
/// `Ok(None)`: more bytes are needed (nothing consumed). `Ok(Some(args))`: one request,
/// possibly empty (a blank inline line or `*0`, which Redis ignores).
pub fn parse_request(buf: &mut BytesMut) -> Result<Option<Args>, ProtocolError> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] == b'*' {
        parse_multibulk(buf)
    } else {
        parse_inline(buf)
    }
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| p + from)
}

/// Parses the decimal after a type byte; `None` if it is not a plain integer.
fn parse_len(digits: &[u8]) -> Option<i64> {
    std::str::from_utf8(digits).ok()?.parse::<i64>().ok()
}

fn parse_multibulk(buf: &mut BytesMut) -> Result<Option<Args>, ProtocolError> {
    let Some(end) = find_crlf(buf, 1) else {
        if buf.len() > MAX_ARG_BYTES {
            return Err(perr("too big mbulk count string"));
        }
        return Ok(None);
    };
    let count = parse_len(&buf[1..end]).ok_or_else(|| perr("invalid multibulk length"))?;
    if count > MAX_ARGS as i64 {
        return Err(perr("invalid multibulk length"));
    }
    let count = usize::try_from(count).unwrap_or(0);
    let mut pos = end + 2;
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        if pos >= buf.len() {
            return Ok(None);
        }
        if buf[pos] != b'$' {
            return Err(ProtocolError(expected_dollar(buf[pos])));
        }
        let Some(line_end) = find_crlf(buf, pos + 1) else {
            if buf.len() - pos > MAX_ARG_BYTES {
                return Err(perr("too big bulk count string"));
            }
            return Ok(None);
        };
        let len = parse_len(&buf[pos + 1..line_end]).ok_or_else(|| perr("invalid bulk length"))?;
        let len = usize::try_from(len).map_err(|_| perr("invalid bulk length"))?;
        if len > MAX_ARG_BYTES {
            return Err(perr("invalid bulk length"));
        }
        let start = line_end + 2;
        if buf.len() < start + len + 2 {
            return Ok(None);
        }
        args.push(buf[start..start + len].to_vec());
        pos = start + len + 2;
    }
    buf.advance(pos);
    Ok(Some(args))
}

fn perr(text: &str) -> ProtocolError {
    ProtocolError(text.to_owned())
}

/// Redis names the byte it found instead of `$`.
fn expected_dollar(found: u8) -> String {
    format!("expected '$', got '{}'", char::from(found))
}

fn parse_inline(buf: &mut BytesMut) -> Result<Option<Args>, ProtocolError> {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > MAX_ARG_BYTES {
            return Err(perr("too big inline request"));
        }
        return Ok(None);
    };
    if nl > MAX_ARG_BYTES {
        return Err(perr("too big inline request"));
    }
    let mut line = &buf[..nl];
    if line.last() == Some(&b'\r') {
        line = &line[..line.len() - 1];
    }
    let args = split_args(line).ok_or_else(|| perr("unbalanced quotes in request"))?;
    if args.len() > MAX_ARGS {
        return Err(perr("invalid multibulk length"));
    }
    buf.advance(nl + 1);
    Ok(Some(args))
}

/// Splits an inline line as redis-cli users expect: blanks separate words, `"..."` takes
/// C escapes (`\n`, `\xHH`, ...), `'...'` only `\'`; a closing quote must end the word.
/// `None` on unbalanced quotes.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= line.len() {
            return Some(args);
        }
        let mut word = Vec::new();
        let mut in_double = false;
        let mut in_single = false;
        loop {
            if in_double {
                let c = *line.get(i)?;
                if c == b'\\' && i + 3 < line.len() && line[i + 1] == b'x' {
                    if let (Some(h), Some(l)) = (hex_val(line[i + 2]), hex_val(line[i + 3])) {
                        word.push(h * 16 + l);
                        i += 4;
                        continue;
                    }
                }
                if c == b'\\' && i + 1 < line.len() {
                    word.push(match line[i + 1] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                    i += 2;
                } else if c == b'"' {
                    // The closing quote must be followed by a blank or the end.
                    if i + 1 < line.len() && !line[i + 1].is_ascii_whitespace() {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    word.push(c);
                    i += 1;
                }
            } else if in_single {
                let c = *line.get(i)?;
                if c == b'\\' && line.get(i + 1) == Some(&b'\'') {
                    word.push(b'\'');
                    i += 2;
                } else if c == b'\'' {
                    if i + 1 < line.len() && !line[i + 1].is_ascii_whitespace() {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    word.push(c);
                    i += 1;
                }
            } else {
                match line.get(i) {
                    None => break,
                    Some(c) if c.is_ascii_whitespace() => break,
                    Some(b'"') => in_double = true,
                    Some(b'\'') => in_single = true,
                    Some(&c) => word.push(c),
                }
                i += 1;
            }
        }
        args.push(word);
    }
}

fn hex_val(c: u8) -> Option<u8> {
    (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> (Result<Option<Args>, ProtocolError>, usize) {
        let mut buf = BytesMut::from(bytes);
        let r = parse_request(&mut buf);
        (r, buf.len())
    }

    #[test]
    fn multibulk_complete_partial_and_pipelined() {
        let (r, left) = parse(b"*2\r\n$4\r\nPING\r\n$2\r\nhi\r\n*1\r\n");
        assert_eq!(r.unwrap().unwrap(), vec![b"PING".to_vec(), b"hi".to_vec()]);
        assert_eq!(left, 4);
        for cut in 1..22 {
            let (r, left) = parse(&b"*2\r\n$4\r\nPING\r\n$2\r\nhi\r\n"[..cut]);
            assert_eq!(r.unwrap(), None, "cut at {cut}");
            assert_eq!(left, cut);
        }
        assert_eq!(parse(b"*0\r\n").0.unwrap().unwrap(), Vec::<Vec<u8>>::new());
    }

    #[test]
    fn limits_and_malformed_input_are_protocol_errors() {
        assert_eq!(parse(b"*x\r\n").0, Err(perr("invalid multibulk length")));
        assert_eq!(parse(b"*65\r\n").0, Err(perr("invalid multibulk length")));
        assert_eq!(parse(b"*1\r\n$-1\r\n").0, Err(perr("invalid bulk length")));
        assert_eq!(
            parse(b"*1\r\n$70000\r\n").0,
            Err(perr("invalid bulk length"))
        );
        assert!(parse(b"*1\r\n:1\r\n").0.is_err());
        let long = vec![b'a'; MAX_ARG_BYTES + 2];
        assert_eq!(parse(&long).0, Err(perr("too big inline request")));
    }

    #[test]
    fn inline_quotes_follow_redis() {
        assert_eq!(
            split_args(b"  PING  a ").unwrap(),
            vec![b"PING".to_vec(), b"a".to_vec()]
        );
        assert_eq!(
            split_args(br#"x "a b\n\x41" 'c\'d'"#).unwrap(),
            vec![b"x".to_vec(), b"a b\nA".to_vec(), b"c'd".to_vec()]
        );
        assert_eq!(split_args(b"\"open"), None);
        assert_eq!(split_args(b"\"a\"b"), None);
        assert_eq!(
            parse(b"PING a\r\n").0.unwrap().unwrap(),
            vec![b"PING".to_vec(), b"a".to_vec()]
        );
        assert_eq!(parse(b"\r\n").0.unwrap().unwrap(), Vec::<Vec<u8>>::new());
    }

    #[test]
    fn maps_are_flat_in_resp2_and_nulls_differ() {
        let map = Reply::bulk_map([("a", "1")]);
        let mut two = Vec::new();
        map.encode(2, &mut two);
        assert_eq!(two, b"*2\r\n$1\r\na\r\n$1\r\n1\r\n");
        let mut three = Vec::new();
        map.encode(3, &mut three);
        assert_eq!(three, b"%1\r\n$1\r\na\r\n$1\r\n1\r\n");
        let mut n = Vec::new();
        Reply::NullArray.encode(2, &mut n);
        Reply::NullArray.encode(3, &mut n);
        Reply::Push(vec![Reply::Int(1)]).encode(3, &mut n);
        assert_eq!(n, b"*-1\r\n_\r\n>1\r\n:1\r\n");
        assert_eq!(Reply::err("a\r\nb"), Reply::Error("ERR a  b".into()));
    }
}
