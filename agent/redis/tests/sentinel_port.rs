//! The port's own behaviour: events to subscribers, the stale view's answers, slow
//! subscribers, the connection limit and shutdown.
#![allow(clippy::too_many_lines)]

mod sentinel_support;

use std::time::{Duration, Instant};

use sentinel_support::*;
use warden_redis::sentinel::{Instance, SentinelConfig, SentinelView};

fn inst(port: u16) -> Instance {
    Instance {
        ip: "10.0.0.1".into(),
        port,
        run_id: "a".repeat(40),
    }
}

fn fresh(primary: u16) -> SentinelView {
    SentinelView {
        fresh: true,
        primary: Some(inst(primary)),
        primary_since: Some(Instant::now()),
        ..SentinelView::unknown("mymaster", "b".repeat(40))
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_get_switch_master_from_publish_and_from_a_new_view() {
    let port = Port::start(fresh(6379), SentinelConfig::default()).await;
    let p = port.port;
    let (mut resp2, mut resp3) = blocking(move || {
        let mut a = Client::connect(p);
        assert_eq!(
            a.cmd(&["SUBSCRIBE", "+switch-master"]),
            b"*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n"
        );
        let mut b = Client::connect(p);
        b.cmd(&["HELLO", "3"]);
        assert_eq!(
            b.cmd(&["PSUBSCRIBE", "*"]),
            b">3\r\n$10\r\npsubscribe\r\n$1\r\n*\r\n:1\r\n"
        );
        (a, b)
    })
    .await;
    port.hub
        .publish("+switch-master", "mymaster 10.0.0.1 6379 10.0.0.2 6380");
    let (a, b) = blocking(move || {
        let expect2 = b"*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$36\r\nmymaster 10.0.0.1 6379 10.0.0.2 6380\r\n";
        assert_eq!(resp2.reply(), expect2);
        let expect3 = b">4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$14\r\n+switch-master\r\n$36\r\nmymaster 10.0.0.1 6379 10.0.0.2 6380\r\n";
        assert_eq!(resp3.reply(), expect3);
        (resp2, resp3)
    })
    .await;
    (resp2, resp3) = (a, b);
    // The daemon only publishes a new view: the port derives the event itself.
    port.view.send_modify(|v| {
        v.primary = Some(inst(6380));
        v.epoch = 2;
    });
    blocking(move || {
        let payload = "mymaster 10.0.0.1 6379 10.0.0.1 6380";
        let expect = format!(
            "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n${}\r\n{payload}\r\n",
            payload.len()
        );
        assert_eq!(resp2.reply(), expect.as_bytes());
        // The pattern subscriber sees every event: the new epoch first, then the switch.
        let first = String::from_utf8(resp3.reply()).unwrap();
        assert!(
            first.contains("+new-epoch") && first.ends_with("$1\r\n2\r\n"),
            "{first}"
        );
        let second = String::from_utf8(resp3.reply()).unwrap();
        assert!(
            second.contains("+switch-master") && second.ends_with(&format!("{payload}\r\n")),
            "{second}"
        );
    })
    .await;
    port.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_view_names_no_primary_and_says_sdown() {
    let port = Port::start(fresh(6379), SentinelConfig::default()).await;
    let p = port.port;
    let mut sub = blocking(move || {
        let mut sub = Client::connect(p);
        sub.cmd(&["PSUBSCRIBE", "*sdown"]);
        let mut c = Client::connect(p);
        assert_eq!(
            c.cmd(&["SENTINEL", "get-master-addr-by-name", "mymaster"]),
            b"*2\r\n$8\r\n10.0.0.1\r\n$4\r\n6379\r\n"
        );
        sub
    })
    .await;
    // The agent loses etcd.
    port.view.send_modify(|v| v.fresh = false);
    blocking(move || {
        let down = String::from_utf8(sub.reply()).unwrap();
        assert!(
            down.ends_with("$6\r\n+sdown\r\n$29\r\nmaster mymaster 10.0.0.1 6379\r\n"),
            "{down}"
        );
        let mut c = Client::connect(p);
        let idk =
            b"-IDONTKNOW I have not enough information to reply. Please ask another Sentinel.\r\n";
        assert_eq!(
            c.cmd(&["SENTINEL", "get-master-addr-by-name", "mymaster"]),
            idk
        );
        assert_eq!(c.cmd(&["SENTINEL", "master", "mymaster"]), idk);
        assert_eq!(c.cmd(&["SENTINEL", "replicas", "mymaster"]), idk);
        assert_eq!(c.cmd(&["SENTINEL", "sentinels", "mymaster"]), idk);
        assert_eq!(c.cmd(&["SENTINEL", "masters"]), b"*0\r\n");
        assert!(c
            .cmd(&["SENTINEL", "ckquorum", "mymaster"])
            .starts_with(b"-NOQUORUM 0 usable Sentinels."));
        let info = String::from_utf8(c.cmd(&["INFO", "sentinel"])).unwrap();
        assert!(
            info.contains("master0:name=mymaster,status=sdown,address=?,slaves=0,sentinels=1\r\n"),
            "{info}"
        );
        assert!(!info.contains("10.0.0.1"));
        // Unknown names still get Sentinel's answers.
        assert_eq!(
            c.cmd(&["SENTINEL", "get-master-addr-by-name", "x"]),
            b"*-1\r\n"
        );
        assert_eq!(
            c.cmd(&["ROLE"]),
            b"*2\r\n$8\r\nsentinel\r\n*1\r\n$8\r\nmymaster\r\n"
        );
    })
    .await;
    // A fresh view without a leader (failover under way) does not name one either.
    port.view.send_modify(|v| {
        v.fresh = true;
        v.primary = None;
    });
    blocking(move || {
        let mut c = Client::connect(p);
        assert!(c
            .cmd(&["SENTINEL", "get-master-addr-by-name", "mymaster"])
            .starts_with(b"-IDONTKNOW"));
        assert_eq!(c.cmd(&["SENTINEL", "sentinels", "mymaster"]), b"*0\r\n");
    })
    .await;
    port.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_is_dropped_and_others_keep_up() {
    let config = SentinelConfig {
        event_queue: 8,
        write_timeout: Duration::from_millis(300),
        ..SentinelConfig::default()
    };
    let port = Port::start(fresh(6379), config).await;
    let p = port.port;
    let (mut slow, mut fast) = blocking(move || {
        let mut slow = Client::connect(p);
        slow.cmd(&["SUBSCRIBE", "e"]);
        let mut fast = Client::connect(p);
        fast.cmd(&["SUBSCRIBE", "e"]);
        (slow, fast)
    })
    .await;
    let payload = "x".repeat(16 * 1024);
    let reader = tokio::task::spawn_blocking(move || {
        // The fast subscriber reads every message as it comes.
        for i in 0..2000 {
            let msg = fast.reply();
            assert!(
                msg.ends_with(format!("{i:05}\r\n").as_bytes()),
                "message {i} out of order"
            );
        }
    });
    let started = Instant::now();
    for i in 0..2000 {
        port.hub.publish("e", &format!("{payload}{i:05}"));
        if i % 4 == 3 {
            // Let the fast reader drain; publishing itself never waits for anyone.
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("fast subscriber kept up")
        .unwrap();
    // The slow one (never read) was disconnected: its stream ends before all 2000 arrive.
    let got = blocking(move || slow.read_to_close()).await;
    let messages = got.windows(9).filter(|w| w == b"\r\nmessage").count();
    assert!(
        messages < 2000,
        "slow subscriber got everything ({messages})"
    );
    port.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_idle_timeout_and_shutdown() {
    let config = SentinelConfig {
        max_connections: 1,
        idle_timeout: Duration::from_millis(500),
        ..SentinelConfig::default()
    };
    let port = Port::start(fresh(6379), config).await;
    let p = port.port;
    blocking(move || {
        let mut first = Client::connect(p);
        assert_eq!(first.cmd(&["PING"]), b"+PONG\r\n");
        let mut second = Client::connect(p);
        assert_eq!(
            second.read_to_close(),
            b"-ERR max number of clients reached\r\n"
        );
        // Idle: closed by the server, then the slot is free again.
        assert_eq!(first.read_to_close(), b"");
        wait_for(|| {
            Client::try_connect(p)
                .and_then(|mut c| c.try_line(&["PING"]))
                .is_some_and(|l| l == b"+PONG\r\n")
        });
    })
    .await;
    // The probe's slot is released when the server notices it closed: retry until the
    // subscriber gets in (one slot), then read the rest of the confirmation.
    let mut sub = blocking(move || {
        let mut sub = None;
        wait_for(|| {
            let Some(mut c) = Client::try_connect(p) else {
                return false;
            };
            if c.try_line(&["SUBSCRIBE", "x"])
                .is_some_and(|l| l == b"*3\r\n")
            {
                sub = Some(c);
            }
            sub.is_some()
        });
        let mut sub = sub.expect("subscribed");
        // The confirmation's three elements after its header line.
        for _ in 0..3 {
            sub.reply();
        }
        sub
    })
    .await;
    // A subscriber is not idle: it outlives the idle timeout, and shutdown closes it.
    tokio::time::sleep(Duration::from_millis(800)).await;
    port.hub.publish("x", "still here");
    let sub_back = blocking(move || {
        assert!(sub.reply().ends_with(b"still here\r\n"));
        sub
    })
    .await;
    port.stop().await;
    let mut sub = sub_back;
    assert_eq!(blocking(move || sub.read_to_close()).await, b"");
}
