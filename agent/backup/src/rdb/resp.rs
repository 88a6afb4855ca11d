//! The few RESP commands a drill sends to its scratch `redis-server` (`PING`,
//! `DBSIZE`, `GET`): one connection, every read and write bounded.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// A reply line longer than this is not one of these commands' answers.
const LINE_MAX: usize = 64 * 1024;
/// The largest `GET` value a check reads.
const BULK_MAX: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
}

pub struct Conn {
    stream: BufReader<TcpStream>,
    bound: Duration,
}

impl Conn {
    pub async fn connect(port: u16, bound: Duration) -> Result<Self> {
        let stream = timeout(bound, TcpStream::connect(("127.0.0.1", port)))
            .await
            .map_err(|_| anyhow!("connecting to 127.0.0.1:{port}: no answer within {bound:?}"))?
            .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
        Ok(Self {
            stream: BufReader::new(stream),
            bound,
        })
    }

    pub async fn command(&mut self, args: &[&str]) -> Result<Reply> {
        let bound = self.bound;
        timeout(bound, self.exchange(args))
            .await
            .map_err(|_| anyhow!("{} got no answer within {bound:?}", args[0]))?
    }

    async fn exchange(&mut self, args: &[&str]) -> Result<Reply> {
        let mut cmd = format!("*{}\r\n", args.len());
        for a in args {
            cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.stream.get_mut().write_all(cmd.as_bytes()).await?;
        let line = self.line().await?;
        let (kind, rest) = line.split_at(1);
        Ok(match kind {
            "+" => Reply::Simple(rest.to_owned()),
            "-" => Reply::Error(rest.to_owned()),
            ":" => Reply::Int(rest.parse().context("an integer reply")?),
            "$" => {
                let len: i64 = rest.parse().context("a bulk length")?;
                if len < 0 {
                    Reply::Bulk(None)
                } else {
                    let len = usize::try_from(len)?;
                    if len > BULK_MAX {
                        bail!("a value of {len} bytes, more than a check reads ({BULK_MAX})");
                    }
                    let mut data = vec![0u8; len + 2];
                    self.stream.read_exact(&mut data).await?;
                    data.truncate(len);
                    Reply::Bulk(Some(data))
                }
            }
            _ => bail!("unexpected reply {line:?}"),
        })
    }

    async fn line(&mut self) -> Result<String> {
        let mut buf = Vec::new();
        let n = (&mut self.stream)
            .take(LINE_MAX as u64)
            .read_until(b'\n', &mut buf)
            .await?;
        if n == 0 || buf.last() != Some(&b'\n') {
            bail!("the connection closed or a reply line is too long");
        }
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        if buf.is_empty() {
            bail!("an empty reply line");
        }
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }
}
