//! Reading a sequence of sealed objects (a backup's or dump's parts) as one plaintext
//! stream from blocking code (`tar`, a child's stdin), without holding an object in
//! memory: an async task downloads chunk by chunk into a bounded channel, and the
//! blocking side authenticates and decompresses each object in turn
//! ([`codec::open`]), checking it against its [`Part`] entry at its end.

use std::cell::{Cell, RefCell};
use std::io::{self, Read};
use std::rc::Rc;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::catalog::Part;
use super::codec::{self, CodecError, Opener};
use super::key::EncryptionKey;
use super::repo::{RepoError, Repository};

/// Chunks in flight between the download task and the reader.
const CHANNEL_CAPACITY: usize = 8;

#[derive(Debug)]
enum Msg {
    Chunk(Bytes),
    End,
    Failed(String),
}

/// Starts downloading `paths` in order. The task stops when the reader goes away.
pub fn download(repo: Repository, paths: Vec<String>) -> Receiver {
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    tokio::spawn(async move {
        for path in paths {
            let result: Result<(), RepoError> = async {
                let mut d = repo.download(&path).await?;
                while let Some(chunk) = d.next_chunk().await? {
                    if tx.send(Msg::Chunk(chunk)).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(())
            }
            .await;
            let msg = match result {
                Ok(()) => Msg::End,
                Err(e) => Msg::Failed(e.to_string()),
            };
            let failed = matches!(msg, Msg::Failed(_));
            if tx.send(msg).await.is_err() || failed {
                return;
            }
        }
    });
    Receiver(rx)
}

/// The blocking end of [`download`].
#[derive(Debug)]
pub struct Receiver(mpsc::Receiver<Msg>);

/// The raw bytes of the current object, to its end.
struct ObjectReader {
    rx: Rc<RefCell<Receiver>>,
    buf: Bytes,
    /// The object's end (or a failure) was taken from the channel.
    ended: Rc<Cell<bool>>,
    /// Raw bytes read (the stored size).
    read: Rc<Cell<u64>>,
}

impl Read for ObjectReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.buf.is_empty() {
            if self.ended.get() {
                return Ok(0);
            }
            match self.rx.borrow_mut().0.blocking_recv() {
                Some(Msg::Chunk(b)) => self.buf = b,
                Some(Msg::End) => self.ended.set(true),
                Some(Msg::Failed(e)) => {
                    self.ended.set(true);
                    return Err(io::Error::other(e));
                }
                None => {
                    self.ended.set(true);
                    return Err(io::Error::other("the download stopped"));
                }
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        let _ = self.buf.split_to(n);
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

/// A problem with one object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub object: String,
    pub problem: String,
}

/// The plaintext of all parts, concatenated. A part that fails (authentication, its
/// digest or size against the record, the download) ends the stream with an error and
/// is recorded in [`PartsReader::problems`]; [`PartsReader::drain`] then checks the
/// remaining parts on their own.
pub struct PartsReader {
    rx: Rc<RefCell<Receiver>>,
    key: EncryptionKey,
    /// (object path, expected) for each part, in order.
    parts: Vec<(String, Part)>,
    next: usize,
    current: Option<Opener<ObjectReader>>,
    current_plain: u64,
    current_raw: Rc<Cell<u64>>,
    current_ended: Rc<Cell<bool>>,
    pub problems: Vec<Problem>,
    pub checked: usize,
    pub bytes: u64,
}

impl std::fmt::Debug for PartsReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartsReader")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl PartsReader {
    /// `parts`: object path and record entry of each part, in order; `rx` must be
    /// downloading exactly those paths.
    pub fn new(rx: Receiver, key: EncryptionKey, parts: Vec<(String, Part)>) -> Self {
        Self {
            rx: Rc::new(RefCell::new(rx)),
            key,
            parts,
            next: 0,
            current: None,
            current_plain: 0,
            current_raw: Rc::new(Cell::new(0)),
            current_ended: Rc::new(Cell::new(true)),
            problems: Vec::new(),
            checked: 0,
            bytes: 0,
        }
    }

    fn fail(&mut self, problem: &str) -> io::Error {
        let object = self.parts[self.next - 1].0.clone();
        self.problems.push(Problem {
            object: object.clone(),
            problem: problem.to_owned(),
        });
        self.current = None;
        self.skip_rest();
        io::Error::other(format!("{object}: {problem}"))
    }

    fn start_next(&mut self) -> io::Result<bool> {
        let Some((path, _)) = self.parts.get(self.next) else {
            return Ok(false);
        };
        let path = path.clone();
        self.next += 1;
        self.current_raw = Rc::new(Cell::new(0));
        self.current_ended = Rc::new(Cell::new(false));
        self.current_plain = 0;
        let reader = ObjectReader {
            rx: self.rx.clone(),
            buf: Bytes::new(),
            ended: self.current_ended.clone(),
            read: self.current_raw.clone(),
        };
        match codec::open(&self.key, &path, reader) {
            Ok(o) => {
                self.current = Some(o);
                Ok(true)
            }
            Err(e) => Err(self.fail(&e.to_string())),
        }
    }

    /// At the end of the current part: its sealed digest and sizes against the record.
    fn finish_part(&mut self) -> io::Result<()> {
        let opener = self.current.take().expect("a current part");
        let digest = opener.digest().map(hex::encode).unwrap_or_default();
        self.skip_rest();
        let (_, want) = &self.parts[self.next - 1];
        let raw = self.current_raw.get();
        // An empty record checksum: a codec version 3 part (no digest sealed; its
        // bytes are authenticated, its files checked against backup_manifest).
        let problem = if !want.sha256.is_empty() && digest != want.sha256 {
            Some(format!(
                "checksum {digest} does not match the record's {}",
                want.sha256
            ))
        } else if self.current_plain != want.plain_size {
            Some(format!(
                "{} plaintext bytes, the record says {}",
                self.current_plain, want.plain_size
            ))
        } else if raw != want.stored_size {
            Some(format!(
                "{raw} stored bytes, the record says {}",
                want.stored_size
            ))
        } else {
            None
        };
        // The object was read to its end already: nothing to skip.
        if let Some(p) = problem {
            let object = self.parts[self.next - 1].0.clone();
            self.problems.push(Problem {
                object: object.clone(),
                problem: p.clone(),
            });
            return Err(io::Error::other(format!("{object}: {p}")));
        }
        self.checked += 1;
        Ok(())
    }

    /// After an error: authenticates and checks every part not read yet, on its own.
    pub fn drain(&mut self) {
        if self.current.is_some() {
            let mut sink = io::sink();
            let _ = io::copy(self, &mut sink);
        }
        while self.next < self.parts.len() {
            self.current = None;
            if self.start_next().is_err() {
                continue;
            }
            let _ = io::copy(self, &mut io::sink());
        }
    }
}

impl PartsReader {
    /// Takes what is left of the current object from the channel, so the next object
    /// starts at its own first byte.
    fn skip_rest(&mut self) {
        if self.current_ended.get() {
            return;
        }
        loop {
            let msg = self.rx.borrow_mut().0.blocking_recv();
            match msg {
                Some(Msg::Chunk(b)) => self
                    .current_raw
                    .set(self.current_raw.get() + b.len() as u64),
                Some(Msg::End) | Some(Msg::Failed(_)) | None => break,
            }
        }
        self.current_ended.set(true);
    }
}

impl Read for PartsReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.current.is_none() && !self.start_next()? {
                return Ok(0);
            }
            let opener = self.current.as_mut().expect("started above");
            match opener.read(out) {
                Ok(0) => self.finish_part()?,
                Ok(n) => {
                    self.current_plain += n as u64;
                    self.bytes += n as u64;
                    return Ok(n);
                }
                Err(e) => {
                    let e = CodecError::from_io(e);
                    // The download failing is not the object's fault, but it is still
                    // this object that could not be verified.
                    return Err(self.fail(&e.to_string()));
                }
            }
        }
    }
}
