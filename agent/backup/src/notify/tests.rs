//! Against a real HTTP listener on 127.0.0.1.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Accepts connections; answers each request with the next status of `statuses`
/// (then 200), and hands every body received to the channel.
async fn listener(statuses: Vec<u16>) -> (Secret, mpsc::Receiver<serde_json::Value>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Secret(format!(
        "http://{}/hooks/T000/secret-token",
        l.local_addr().unwrap()
    ));
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut statuses = statuses.into_iter();
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                let n = s.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    break Some(buf[end + 4..end + 4 + len].to_vec());
                }
            };
            let Some(body) = body else { continue };
            let status = statuses.next().unwrap_or(200);
            let resp =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = s.write_all(resp.as_bytes()).await;
            let _ = tx.send(serde_json::from_slice(&body).unwrap()).await;
        }
    });
    (url, rx)
}

async fn next(rx: &mut mpsc::Receiver<serde_json::Value>) -> serde_json::Value {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a notification within 20 s")
        .unwrap()
}

#[tokio::test]
async fn posts_slack_json_and_suppresses_repeats() {
    let (url, mut rx) = listener(vec![]).await;
    let n = Notifier::start(url, "demo", "n1");
    n.alert(Kind::Archive, "000000010000000000000003: conflict");
    let got = next(&mut rx).await;
    assert_eq!(
        got["text"],
        "warden demo/n1: archive failed: 000000010000000000000003: conflict"
    );
    assert_eq!(got["warden"]["kind"], "archive");
    assert_eq!(got["warden"]["member"], "n1");
    // The same text again is suppressed; a different one goes out.
    n.alert(Kind::Archive, "000000010000000000000003: conflict");
    n.alert(Kind::Backup, "pg_basebackup exited with 1");
    let got = next(&mut rx).await;
    assert_eq!(got["warden"]["kind"], "backup");
    assert_eq!(n.counters().suppressed.load(Ordering::Relaxed), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while n.counters().sent.load(Ordering::Relaxed) < 2 {
        assert!(Instant::now() < deadline, "never counted as sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn retries_after_an_error_status() {
    let (url, mut rx) = listener(vec![500]).await;
    let n = Notifier::start(url, "demo", "n1");
    n.alert(Kind::Drill, "check rows failed");
    let first = next(&mut rx).await;
    let second = next(&mut rx).await;
    assert_eq!(first, second);
    let deadline = Instant::now() + Duration::from_secs(10);
    while n.counters().sent.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "never counted as sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(n.counters().failed.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_full_queue_drops_the_oldest() {
    // A receiver that accepts but never answers: the sender is stuck on the first
    // event for POST_TIMEOUT, so the queue fills.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Secret(format!("http://{}/x", l.local_addr().unwrap()));
    let hold = tokio::spawn(async move {
        let mut conns = Vec::new();
        loop {
            let (s, _) = l.accept().await.unwrap();
            conns.push(s);
        }
    });
    let n = Notifier::start(url, "demo", "n1");
    for i in 0..(QUEUE_CAPACITY + 5) {
        n.alert(Kind::Backup, &format!("failure {i}"));
    }
    // Nothing was taken off yet (the sender task had no chance to run on this
    // single-threaded test runtime), so exactly 5 were dropped.
    assert_eq!(n.counters().dropped.load(Ordering::Relaxed), 5);
    let q = lock(&n.inner.queue);
    assert_eq!(q.len(), QUEUE_CAPACITY);
    assert!(q.front().unwrap().text.ends_with("failure 5"));
    assert!(q
        .back()
        .unwrap()
        .text
        .ends_with(&format!("failure {}", QUEUE_CAPACITY + 4)));
    drop(q);
    hold.abort();
}
