//! Commands that write the cluster's keys themselves: `edit-config` (by
//! compare-and-swap) and `remove`.

use super::fixtures::*;
use crate::args::Cli;
use crate::config::CtlConfig;
use crate::{io::Io, Ctl};
use clap::Parser;
use serde_json::{json, Value};
use std::sync::Arc;
use warden_consensus::memory::MemoryDcs;
use warden_consensus::Dcs;

#[tokio::test]
async fn edit_config_sets_validates_and_writes_by_cas() {
    let f = Fixture::new(always(200, ""), &[]).await;
    let (_, rev0) = f.get("config").await.unwrap();

    let o = f
        .run(&["edit-config", "-s", "ttl=abc", "--force"], "")
        .await;
    let e = o.error();
    assert!(e.contains("ttl: expected an integer, got \"abc\""), "{e}");
    assert_eq!(
        f.get("config").await.unwrap().1,
        rev0,
        "nothing may be written"
    );

    let o = f
        .run(
            &[
                "edit-config",
                "-s",
                "loop_wait=3",
                "-p",
                "work_mem=8MB",
                "--force",
            ],
            "",
        )
        .await;
    o.ok();
    assert!(
        o.out.contains("-loop_wait: 10\n+loop_wait: 3\n"),
        "{}",
        o.out
    );
    assert!(o.out.ends_with("Configuration changed\n"), "{}", o.out);
    let (text, rev1) = f.get("config").await.unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["loop_wait"], json!(3));
    assert_eq!(v["postgresql"]["parameters"]["work_mem"], json!("8MB"));
    assert_eq!(v["ttl"], json!(30));
    assert!(rev1 > rev0);

    let o = f
        .run(&["edit-config", "-s", "loop_wait=3", "--force"], "")
        .await;
    o.ok();
    assert_eq!(o.out, "Not changed\n");

    // Interactive: the question is asked, and "no" changes nothing.
    let o = f.run(&["edit-config", "-s", "ttl=40"], "n\n").await;
    assert!(o.error().contains("not confirmed"), "{}", o.error());
    assert!(o.out.contains("Apply these changes? [y/N]: "), "{}", o.out);
    assert_eq!(f.get("config").await.unwrap().1, rev1);

    // --apply merges, --replace replaces.
    let dir = tempfile::tempdir().unwrap();
    let patch = dir.path().join("p.yml");
    std::fs::write(
        &patch,
        "postgresql:\n  parameters: {work_mem: null, max_connections: 200}\n",
    )
    .unwrap();
    let o = f
        .run(
            &[
                "edit-config",
                "--apply",
                patch.to_str().unwrap(),
                "--force",
                "-q",
            ],
            "",
        )
        .await;
    o.ok();
    assert_eq!(o.out, "Configuration changed\n");
    let v: Value = serde_json::from_str(&f.get("config").await.unwrap().0).unwrap();
    assert_eq!(
        v["postgresql"]["parameters"],
        json!({"max_connections": 200})
    );
    std::fs::write(&patch, "ttl: 20\nloop_wait: 2\nretry_timeout: 5\n").unwrap();
    let o = f
        .run(
            &[
                "edit-config",
                "--replace",
                patch.to_str().unwrap(),
                "--force",
            ],
            "",
        )
        .await;
    o.ok();
    let v: Value = serde_json::from_str(&f.get("config").await.unwrap().0).unwrap();
    assert_eq!(v, json!({"ttl": 20, "loop_wait": 2, "retry_timeout": 5}));

    // From stdin without --force: shown, not applied.
    let o = f.run(&["edit-config", "--apply", "-"], "ttl: 25\n").await;
    assert!(o.error().contains("--force"), "{}", o.error());
    let o = f
        .run(&["edit-config", "--apply", "-", "--force"], "ttl: 25\n")
        .await;
    o.ok();
    let v: Value = serde_json::from_str(&f.get("config").await.unwrap().0).unwrap();
    assert_eq!(v["ttl"], json!(25));
}

#[tokio::test]
async fn edit_config_with_the_editor() {
    let f = Fixture::new(always(200, ""), &[]).await;
    let cli = Cli::try_parse_from(["wardenctl", "edit-config"]).unwrap();
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut input = std::io::Cursor::new(b"y\n".to_vec());
    let mut ctl = Ctl::new(
        CtlConfig {
            scope: Some("demo".into()),
            ..CtlConfig::default()
        },
        Io {
            out: &mut out,
            err: &mut err,
            input: &mut input,
        },
    )
    .with_dcs(Arc::new(f.dcs.clone()));
    ctl.editor = Some("sed -i 's/^loop_wait: 10$/loop_wait: 4/'".into());
    ctl.run(cli.command).await.unwrap();
    let v: Value = serde_json::from_str(&f.get("config").await.unwrap().0).unwrap();
    assert_eq!(v["loop_wait"], json!(4));
    // An editor that fails changes nothing.
    let o = f.run(&["edit-config"], "y\n").await;
    assert!(o.error().contains("editor"), "{}", o.error());
}

/// Standard input that, when first read (i.e. at "Apply these changes?"), lets another
/// editor change the config: the read-modify-write must then be refused.
struct RacingInput {
    dcs: MemoryDcs,
    inner: std::io::Cursor<Vec<u8>>,
    raced: bool,
}

impl std::io::Read for RacingInput {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::io::Read::read(&mut self.inner, buf)
    }
}

impl std::io::BufRead for RacingInput {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if !self.raced {
            self.raced = true;
            let dcs = self.dcs.clone();
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async move {
                    put(
                        &dcs,
                        "config",
                        r#"{"ttl":30,"loop_wait":7,"retry_timeout":10}"#,
                    )
                    .await;
                })
            });
        }
        self.inner.fill_buf()
    }
    fn consume(&mut self, n: usize) {
        self.inner.consume(n);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_config_refuses_a_concurrent_change() {
    let f = Fixture::new(always(200, ""), &[]).await;
    let mut input = RacingInput {
        dcs: f.dcs.clone(),
        inner: std::io::Cursor::new(b"y\n".to_vec()),
        raced: false,
    };
    let o = run_with(&f.dcs, &["edit-config", "-s", "loop_wait=3"], &mut input).await;
    let e = o.error();
    assert!(e.contains("changed concurrently"), "{e}");
    let v: Value = serde_json::from_str(&f.get("config").await.unwrap().0).unwrap();
    assert_eq!(v["loop_wait"], json!(7), "the other editor's change stands");
}

#[tokio::test]
async fn remove_asks_three_times_and_deletes_only_the_cluster() {
    let f = Fixture::new(always(200, ""), &[]).await;
    for other in ["/service/other/leader", "/service/demo2/leader"] {
        f.dcs.put(other, b"x".to_vec(), None).await.unwrap();
    }
    let count = |f: &Fixture| {
        let dcs = f.dcs.clone();
        async move { dcs.get_prefix(P).await.unwrap().kvs.len() }
    };
    let n = count(&f).await;
    for (input, needle) in [
        ("demox\n", "do not match"),
        ("demo\nyes\n", "Yes I am aware"),
        ("demo\nYes I am aware\nnode2\n", "current leader"),
        ("", "standard input is closed"),
    ] {
        let o = f.run(&["remove", "demo"], input).await;
        assert!(o.error().contains(needle), "{input:?}: {}", o.error());
        assert!(o.error().contains("nothing removed") || input.is_empty());
        assert_eq!(count(&f).await, n, "{input:?} deleted something");
    }
    let o = f
        .run(&["remove", "demo"], "demo\nYes I am aware\nnode1\n")
        .await;
    o.ok();
    assert!(
        o.out
            .contains("Please confirm the cluster name to remove: "),
        "{}",
        o.out
    );
    assert_eq!(count(&f).await, 0);
    assert_eq!(f.dcs.get_prefix("/service/").await.unwrap().kvs.len(), 2);
}
