//! The replication protocol's edge cases against a scripted server on a loopback
//! port: keep-alives, an end mark split across writes, a stream cut short, silence,
//! a deadline, and payloads that are not a valid RDB.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use warden_redis::rdb::{crc64, fetch_rdb, FetchError, FetchOptions, RdbError, Transfer};

const MARK: &[u8; 40] = b"0123456789abcdef0123456789abcdef01234567";

/// An RDB of `keys` string keys with 1000-byte values (about `keys` KB).
fn rdb(keys: usize) -> Vec<u8> {
    let mut b = b"REDIS0010".to_vec();
    b.extend_from_slice(b"\xfa\x09redis-ver\x067.0.15\xfe\x00");
    for i in 0..keys {
        let key = format!("k{i:06}");
        b.push(0x00);
        b.push(key.len() as u8);
        b.extend_from_slice(key.as_bytes());
        b.extend_from_slice(&[0x40 | (1000 >> 8) as u8, (1000 & 0xff) as u8]);
        b.extend((0..1000).map(|j| b'a' + ((i * 7 + j) % 26) as u8));
    }
    b.push(0xff);
    let crc = crc64(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// Answers `+OK` to everything before `SYNC`, then runs `script` on the socket.
async fn serve<F, Fut>(script: F) -> (FetchOptions, tokio::task::JoinHandle<()>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        let mut seen = Vec::new();
        let mut answered = 0;
        let mut buf = [0u8; 1024];
        loop {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "the client hung up before SYNC");
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen).into_owned();
            let replconfs = text.matches("REPLCONF").count();
            while answered < replconfs {
                s.write_all(b"+OK\r\n").await.expect("write");
                answered += 1;
            }
            if text.contains("$4\r\nSYNC\r\n") {
                break;
            }
        }
        script(s).await;
    });
    let mut o = FetchOptions::new("127.0.0.1", port);
    o.idle_timeout = Duration::from_secs(5);
    o.deadline = Duration::from_secs(30);
    (o, task)
}

#[tokio::test]
async fn keepalives_then_a_diskless_payload_with_a_split_end_mark() {
    let body = rdb(300);
    let sent = body.clone();
    let (o, task) = serve(move |mut s| async move {
        s.set_nodelay(true).expect("nodelay");
        s.write_all(b"\n\n\n").await.expect("write");
        s.write_all(b"$EOF:").await.expect("write");
        s.write_all(MARK).await.expect("write");
        s.write_all(b"\r\n").await.expect("write");
        for piece in sent.chunks(7_777) {
            s.write_all(piece).await.expect("write");
        }
        s.write_all(&MARK[..13]).await.expect("write");
        s.flush().await.expect("flush");
        s.write_all(&MARK[13..]).await.expect("write");
        // Stay open: the mark, not the close, ends the payload.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
    })
    .await;
    let mut out = Vec::new();
    let fetched = fetch_rdb(&o, &mut out).await.expect("fetched");
    assert_eq!(out, body);
    assert_eq!(fetched.transfer, Transfer::Diskless);
    assert_eq!(fetched.keepalives, 3);
    assert_eq!(fetched.bytes, body.len() as u64);
    assert_eq!(fetched.crc, crc64(&body[..body.len() - 8]));
    task.await.expect("server");
}

#[tokio::test]
async fn a_sized_payload_cut_short_is_truncated() {
    let body = rdb(100);
    let half = body[..body.len() / 2].to_vec();
    let len = body.len();
    let (o, task) = serve(move |mut s| async move {
        s.write_all(format!("${len}\r\n").as_bytes())
            .await
            .expect("write");
        s.write_all(&half).await.expect("write");
    })
    .await;
    let err = fetch_rdb(&o, &mut Vec::new()).await.expect_err("cut");
    assert!(
        matches!(err, FetchError::Truncated { received, expected: Some(e), .. }
            if received == (len / 2) as u64 && e == len as u64),
        "{err}"
    );
    task.await.expect("server");
}

#[tokio::test]
async fn a_diskless_payload_without_its_mark_is_truncated() {
    let body = rdb(100);
    let (o, task) = serve(move |mut s| async move {
        s.write_all(b"$EOF:").await.expect("write");
        s.write_all(MARK).await.expect("write");
        s.write_all(b"\r\n").await.expect("write");
        s.write_all(&body).await.expect("write");
    })
    .await;
    let err = fetch_rdb(&o, &mut Vec::new()).await.expect_err("no mark");
    assert!(
        matches!(err, FetchError::Truncated { expected: None, .. }),
        "{err}"
    );
    task.await.expect("server");
}

#[tokio::test]
async fn silence_is_an_idle_timeout_and_keepalives_forever_hit_the_deadline() {
    let (mut o, task) = serve(|mut s| async move {
        s.write_all(b"$1000\r\nREDIS0010").await.expect("write");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
    })
    .await;
    o.idle_timeout = Duration::from_millis(300);
    let err = fetch_rdb(&o, &mut Vec::new()).await.expect_err("silent");
    assert!(matches!(err, FetchError::Idle { received: 9, .. }), "{err}");
    task.await.expect("server");

    let (mut o, task) = serve(|mut s| async move {
        while s.write_all(b"\n").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    o.idle_timeout = Duration::from_secs(5);
    o.deadline = Duration::from_millis(600);
    let err = fetch_rdb(&o, &mut Vec::new()).await.expect_err("endless");
    assert!(matches!(err, FetchError::Deadline { .. }), "{err}");
    task.await.expect("server");
}

#[tokio::test]
async fn payloads_that_are_not_a_valid_rdb_are_refused() {
    let mut body = rdb(50);
    let at = body.len() / 3;
    body[at] ^= 0x20;
    let len = body.len();
    let (o, task) = serve(move |mut s| async move {
        s.write_all(format!("${len}\r\n").as_bytes())
            .await
            .expect("write");
        s.write_all(&body).await.expect("write");
    })
    .await;
    let err = fetch_rdb(&o, &mut Vec::new()).await.expect_err("flipped");
    assert!(
        matches!(
            err,
            FetchError::Rdb {
                source: RdbError::ChecksumMismatch { .. },
                ..
            }
        ),
        "{err}"
    );
    task.await.expect("server");

    // A bad header stops the fetch before the announced gigabyte arrives.
    let (o, task) = serve(|mut s| async move {
        s.write_all(b"$1000000000\r\nHTTP/1.1 200 OK\r\n")
            .await
            .expect("write");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
    })
    .await;
    let err = fetch_rdb(&o, &mut Vec::new())
        .await
        .expect_err("not an RDB");
    assert!(
        matches!(
            err,
            FetchError::Rdb {
                source: RdbError::BadMagic { .. },
                ..
            }
        ),
        "{err}"
    );
    task.await.expect("server");

    // An error reply to SYNC, and a reply that is not the protocol.
    let (o, task) = serve(|mut s| async move {
        s.write_all(b"\n-ERR something went wrong\r\n")
            .await
            .expect("write");
    })
    .await;
    let err = fetch_rdb(&o, &mut Vec::new())
        .await
        .expect_err("error reply");
    assert!(
        matches!(
            err,
            FetchError::Refused {
                command: "SYNC",
                ..
            }
        ),
        "{err}"
    );
    task.await.expect("server");
    let (o, task) = serve(|mut s| async move {
        s.write_all(b"*1\r\n").await.expect("write");
    })
    .await;
    let err = fetch_rdb(&o, &mut Vec::new())
        .await
        .expect_err("not RESP payload");
    assert!(matches!(err, FetchError::Protocol { .. }), "{err}");
    task.await.expect("server");
}
