//! Where a region's data files and manifest live: a local directory (the default) or a
//! prefix of an S3-compatible bucket, behind one [`Store`]. Every data-file and manifest
//! read, write, listing and delete goes through it; paths are relative to the region's
//! root, `/`-separated (the manifest's form).
//!
//! Writes are two steps, so that both backends keep the crash-safe order: a writer encodes
//! into a staging file ([`Store::staging_path`]: beside the final name on a local disk,
//! under a local staging directory for a bucket), then [`Store::publish`] makes a set of
//! them durable and visible (local: fsync or `syncfs` → rename → directories fsynced;
//! bucket: one PUT or a multipart upload each, which S3 makes durable before it answers).
//! Only then does the caller record them in the manifest.
//!
//! [`Store::put_new`] is put-if-absent (a hard link over a complete temporary file on a
//! local disk, `If-None-Match: *` on S3): the manifest's commits rely on it so that two
//! writers (a server and a compactor) never overwrite each other's edit.
//!
//! Object-store calls are async; the store runs them on its own small runtime and waits,
//! so synchronous callers (shard threads, the blocking pool, `meridian-compact`) use it
//! directly.

use std::fs::{self, File};
use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::file_cache::FileCache;
use super::parquet::{StorageError, io_err, sync_dirs_up_to, sync_fs};
use super::paths::{CACHE_DIR, STAGING_DIR, is_temp_name, region_dir, temp_path};
use crate::config::{RegionConfig, S3Config, StorageLocation};

pub type Result<T> = std::result::Result<T, StorageError>;

/// Uploads up to this size are one PUT; larger ones are multipart, in parts of this size.
const PART_BYTES: usize = 16 << 20;
/// Object-store requests run at once for one call (ranged reads, uploads of a flush).
const CONCURRENCY: usize = 8;

/// A region's storage root.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Backend>,
}

enum Backend {
    Local {
        root: PathBuf,
    },
    Object {
        url: String,
        store: Arc<dyn ObjectStore>,
        prefix: ObjPath,
        /// Local directory for files being encoded before upload.
        staging: PathBuf,
        /// Whole files kept on the local disk for reads (`None`: budget 0).
        cache: Option<Box<FileCache>>,
        rt: tokio::runtime::Runtime,
    },
}

/// One data file of a store: what the index cache and the readers are given.
#[derive(Clone)]
pub struct FileRef {
    pub store: Store,
    pub rel: String,
    /// Size in bytes, as the manifest records it.
    pub len: u64,
    /// The row group of a packed file's entry (`storage::packed`): the file is read as
    /// that entry's view of it.
    pub row_group: Option<usize>,
}

impl FileRef {
    /// A packed file's entry (`storage::packed`): the file and its row group.
    pub fn packed_entry(&self) -> Option<super::packed::Entry> {
        self.row_group.map(|row_group| super::packed::Entry {
            file: self.store.key_of(&self.rel),
            len: self.len,
            row_group,
        })
    }

    /// A key naming the file (a packed file's entry: the file and its row group) across
    /// stores (the index and page caches).
    pub fn key(&self) -> PathBuf {
        match self.row_group {
            None => self.store.key_of(&self.rel),
            Some(g) => self.store.key_of(&format!("{}#{g}", self.rel)),
        }
    }
}

/// Positioned reads of one file.
pub trait ReadAt: Send + Sync {
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reads exactly `buf.len()` bytes at `pos`.
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> std::io::Result<()>;
    /// Reads several ranges (an object store fetches them concurrently).
    fn read_ranges(&self, ranges: &[Range<u64>]) -> std::io::Result<Vec<Bytes>> {
        ranges
            .iter()
            .map(|r| {
                let mut buf = vec![0u8; (r.end - r.start) as usize];
                self.read_exact_at(&mut buf, r.start)?;
                Ok(Bytes::from(buf))
            })
            .collect()
    }
}

struct LocalFile {
    file: File,
    len: u64,
}

impl ReadAt for LocalFile {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> std::io::Result<()> {
        self.file.read_exact_at(buf, pos)
    }
}

struct ObjectFile {
    store: Store,
    path: ObjPath,
    len: u64,
}

impl ReadAt for ObjectFile {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> std::io::Result<()> {
        let end = pos + buf.len() as u64;
        let got = self.read_ranges(std::slice::from_ref(&(pos..end)))?;
        match got.first() {
            Some(b) if b.len() == buf.len() => {
                buf.copy_from_slice(b);
                Ok(())
            }
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("short read of {} at {pos}", self.path),
            )),
        }
    }
    fn read_ranges(&self, ranges: &[Range<u64>]) -> std::io::Result<Vec<Bytes>> {
        let Backend::Object { store, rt, .. } = &*self.store.inner else {
            return Err(std::io::Error::other("not an object store"));
        };
        let (store, path, ranges) = (store.clone(), self.path.clone(), ranges.to_vec());
        block_on(rt, async move { store.get_ranges(&path, &ranges).await })
            .map_err(std::io::Error::other)
    }
}

/// Creates a file, and its directory if missing (again if a delete of the directory's last
/// file removed it meanwhile).
pub fn create_file(path: &Path) -> std::io::Result<File> {
    for _ in 0..3 {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        match File::create(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            other => return other,
        }
    }
    File::create(path)
}

/// The store's runtime stopped before a call finished (only while the store is dropped).
#[derive(Debug)]
pub struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the object store's runtime stopped")
    }
}

impl std::error::Error for Stopped {}

impl From<Stopped> for object_store::Error {
    fn from(s: Stopped) -> Self {
        object_store::Error::Generic {
            store: "meridian",
            source: Box::new(s),
        }
    }
}

impl From<Stopped> for StorageError {
    fn from(s: Stopped) -> Self {
        StorageError::Config(s.to_string())
    }
}

/// Runs `fut` on the store's runtime and waits for it, from any thread.
fn block_on<T: Send + 'static, E: From<Stopped> + Send + 'static>(
    rt: &tokio::runtime::Runtime,
    fut: impl Future<Output = std::result::Result<T, E>> + Send + 'static,
) -> std::result::Result<T, E> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().map_err(|_| Stopped)?
}

fn obj_err(what: &str) -> impl FnOnce(object_store::Error) -> StorageError + '_ {
    move |source| StorageError::Object {
        what: what.to_string(),
        source,
    }
}

impl Store {
    /// A local directory.
    pub fn local(root: impl Into<PathBuf>) -> Store {
        Store {
            inner: Arc::new(Backend::Local { root: root.into() }),
        }
    }

    /// `s3://bucket/prefix`: the store under `prefix` of `bucket`. Unset options come from
    /// the standard `AWS_*` variables. `staging` is a local directory for uploads.
    pub fn s3(url: &str, opts: &S3Config, staging: &Path, cache_dir: &Path) -> Result<Store> {
        use object_store::aws::AmazonS3Builder;
        let bad = |why: String| StorageError::Config(format!("storage url {url:?}: {why}"));
        let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        if parsed.scheme() != "s3" {
            return Err(bad("only s3:// URLs name a bucket".into()));
        }
        let bucket = parsed
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| bad("no bucket".into()))?;
        let prefix = Self::obj_path(&ObjPath::default(), parsed.path());
        let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(e) = &opts.endpoint {
            b = b.with_endpoint(e);
        }
        if let Some(r) = &opts.region {
            b = b.with_region(r);
        }
        if let Some(k) = &opts.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(s) = &opts.secret_access_key {
            b = b.with_secret_access_key(s);
        }
        if let Some(h) = opts.allow_http {
            b = b.with_allow_http(h);
        }
        // Bounded: a bucket that stops answering fails the call (a flush, a manifest edit, a
        // read) instead of holding it; the flush lease reacts to failing flushes.
        // Set key by key: client options set as a whole would drop `allow_http` and what
        // came from the environment.
        use object_store::ClientConfigKey;
        use object_store::aws::AmazonS3ConfigKey::Client;
        let millis = |d: std::time::Duration| format!("{}ms", d.as_millis().max(1));
        let connect = opts.request_timeout.min(std::time::Duration::from_secs(5));
        b = b
            .with_config(
                Client(ClientConfigKey::Timeout),
                millis(opts.request_timeout),
            )
            .with_config(Client(ClientConfigKey::ConnectTimeout), millis(connect))
            .with_retry(object_store::RetryConfig {
                retry_timeout: opts.retry_timeout,
                ..object_store::RetryConfig::default()
            });
        let store = b.build().map_err(|e| bad(e.to_string()))?;
        fs::create_dir_all(staging).map_err(io_err(staging))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("meridian-store")
            .enable_all()
            .build()
            .map_err(io_err(staging))?;
        let cache = match opts.cache_bytes {
            0 => None,
            budget => Some(Box::new(
                FileCache::open(cache_dir, budget).map_err(io_err(cache_dir))?,
            )),
        };
        Ok(Store {
            inner: Arc::new(Backend::Object {
                url: url.trim_end_matches('/').to_string(),
                store: Arc::new(store),
                prefix,
                staging: staging.to_path_buf(),
                cache,
                rt,
            }),
        })
    }

    /// The store of a region: `<data_dir>/<region>`, or its bucket prefix (staging uploads
    /// under `<data_dir>/<region>/.staging`).
    pub fn for_region(data_dir: &Path, region: &RegionConfig, s3: &S3Config) -> Result<Store> {
        let local = region_dir(data_dir, &region.name);
        match &region.storage {
            StorageLocation::Local => Ok(Store::local(local)),
            StorageLocation::S3 { url } => {
                Store::s3(url, s3, &local.join(STAGING_DIR), &local.join(CACHE_DIR))
            }
        }
    }

    /// Empties the local read cache of a bucket's files (a clean stop).
    pub fn clear_cache(&self) {
        if let Backend::Object { cache: Some(c), .. } = &*self.inner {
            c.clear();
        }
    }

    /// The local root directory, for a local store.
    pub fn local_root(&self) -> Option<&Path> {
        match &*self.inner {
            Backend::Local { root } => Some(root),
            Backend::Object { .. } => None,
        }
    }

    /// Where the store is, for messages.
    pub fn describe(&self) -> String {
        match &*self.inner {
            Backend::Local { root } => root.display().to_string(),
            Backend::Object { url, .. } => url.clone(),
        }
    }

    /// A data file of the manifest.
    pub fn file(&self, f: &super::file_meta::FileMeta) -> FileRef {
        FileRef {
            store: self.clone(),
            rel: f.path.clone(),
            len: f.file_bytes(),
            row_group: f.row_group(),
        }
    }

    /// A key naming `rel` uniquely across stores.
    pub fn key_of(&self, rel: &str) -> PathBuf {
        match &*self.inner {
            Backend::Local { root } => root.join(rel),
            Backend::Object { url, .. } => PathBuf::from(format!("{url}/{rel}")),
        }
    }

    /// The object key of `rel`: exactly its text (`<seq>~c…`, `cpu%2Eload`), not escaped
    /// the way `object_store` escapes a part made from a string (`~` → `%7E`), so that the
    /// keys in the bucket are the names Meridian writes on a local disk and other readers
    /// see those. Parts with characters a key cannot hold (none of Meridian's) are escaped.
    fn obj_path(prefix: &ObjPath, rel: &str) -> ObjPath {
        let mut p = prefix.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            p = match object_store::path::PathPart::parse(part) {
                Ok(raw) => p.join(raw),
                Err(_) => p.join(part),
            };
        }
        p
    }

    /// Opens a file for positioned reads; `len` is its size when known (the manifest's).
    pub fn open(&self, rel: &str, len: Option<u64>) -> Result<Arc<dyn ReadAt>> {
        match &*self.inner {
            Backend::Local { root } => {
                let path = root.join(rel);
                let file = File::open(&path).map_err(io_err(&path))?;
                let actual = file.metadata().map_err(io_err(&path))?.len();
                // Reads are bounded by the length: never trust a recorded one over the file.
                if len.is_some_and(|l| l != actual) {
                    return Err(io_err(&path)(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{actual} bytes on disk, {} recorded", len.unwrap_or(0)),
                    )));
                }
                Ok(Arc::new(LocalFile { file, len: actual }))
            }
            Backend::Object {
                store,
                prefix,
                rt,
                cache,
                ..
            } => {
                let path = Self::obj_path(prefix, rel);
                let len = match len {
                    Some(l) => l,
                    None => {
                        let (s, p) = (store.clone(), path.clone());
                        block_on(rt, async move { s.head(&p).await })
                            .map_err(obj_err(rel))?
                            .size
                    }
                };
                // A cached copy, or one made now (one GET of the whole file): read locally.
                if let Some(c) = cache.as_ref().filter(|c| c.admits(len)) {
                    if let Some(file) = c.get(rel, len) {
                        return Ok(Arc::new(LocalFile { file, len }));
                    }
                    c.fetch_once(rel, || {
                        let scratch = c.scratch();
                        let (s, p, to) = (store.clone(), path.clone(), scratch.clone());
                        match block_on(rt, async move { download(&s, &p, &to).await }) {
                            Ok(got) if got == len => c.insert(rel, len, &scratch),
                            // Not cached: read with ranged requests below.
                            Ok(_) | Err(_) => {
                                let _ = fs::remove_file(&scratch);
                            }
                        }
                    });
                    if let Some(file) = c.get(rel, len) {
                        return Ok(Arc::new(LocalFile { file, len }));
                    }
                }
                Ok(Arc::new(ObjectFile {
                    store: self.clone(),
                    path,
                    len,
                }))
            }
        }
    }

    /// A whole file, or `None` if there is none.
    pub fn read(&self, rel: &str) -> Result<Option<Bytes>> {
        match &*self.inner {
            Backend::Local { root } => {
                let path = root.join(rel);
                match fs::read(&path) {
                    Ok(b) => Ok(Some(Bytes::from(b))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(io_err(&path)(e)),
                }
            }
            Backend::Object {
                store,
                prefix,
                rt,
                cache,
                ..
            } => {
                if let Some(mut f) = cache.as_ref().and_then(|c| c.cached_any(rel)) {
                    use std::io::Read;
                    let mut buf = Vec::new();
                    if f.read_to_end(&mut buf).is_ok() {
                        return Ok(Some(Bytes::from(buf)));
                    }
                }
                let (s, p) = (store.clone(), Self::obj_path(prefix, rel));
                let got = block_on(rt, async move {
                    match s.get(&p).await {
                        Ok(r) => r.bytes().await.map(Some),
                        Err(object_store::Error::NotFound { .. }) => Ok(None),
                        Err(e) => Err(e),
                    }
                });
                got.map_err(obj_err(rel))
            }
        }
    }

    /// Creates `rel` holding `data` only if no such file exists; `false` if one did. The
    /// file is durable when this returns `true`.
    pub fn put_new(&self, rel: &str, data: Bytes) -> Result<bool> {
        match &*self.inner {
            Backend::Local { root } => {
                let path = root.join(rel);
                let dir = path.parent().unwrap_or(root);
                fs::create_dir_all(dir).map_err(io_err(dir))?;
                // Unique per call: writers in other threads and processes race for `path`.
                static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let name = path
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let tmp = dir.join(format!(".{name}.{}-{n}.tmp", std::process::id()));
                let written = (|| {
                    let mut f = create_file(&tmp)?;
                    f.write_all(&data)?;
                    f.sync_all()
                })();
                if let Err(e) = written {
                    let _ = fs::remove_file(&tmp);
                    return Err(io_err(&tmp)(e));
                }
                // A hard link fails if the name exists: the put-if-absent of a local disk.
                let linked = fs::hard_link(&tmp, &path);
                let _ = fs::remove_file(&tmp);
                match linked {
                    Ok(()) => {
                        sync_dirs_up_to(dir, root)?;
                        Ok(true)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                    Err(e) => Err(io_err(&path)(e)),
                }
            }
            Backend::Object {
                store, prefix, rt, ..
            } => {
                let (s, p) = (store.clone(), Self::obj_path(prefix, rel));
                let opts = PutOptions::from(PutMode::Create);
                let r = block_on(rt, async move {
                    s.put_opts(&p, PutPayload::from(data), opts).await
                });
                match r {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
                    Err(e) => Err(obj_err(rel)(e)),
                }
            }
        }
    }

    /// Whether a file exists.
    pub fn exists(&self, rel: &str) -> Result<bool> {
        match &*self.inner {
            Backend::Local { root } => Ok(root.join(rel).is_file()),
            Backend::Object {
                store, prefix, rt, ..
            } => {
                let (s, p) = (store.clone(), Self::obj_path(prefix, rel));
                match block_on(rt, async move { s.head(&p).await }) {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::NotFound { .. }) => Ok(false),
                    Err(e) => Err(obj_err(rel)(e)),
                }
            }
        }
    }

    /// Every file under `dir` (relative, `/`-separated; "" for all), with its size, sorted.
    /// Temporary files are left out.
    pub fn list(&self, dir: &str) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        match &*self.inner {
            Backend::Local { root } => {
                let start = root.join(dir);
                let mut stack = vec![start];
                while let Some(d) = stack.pop() {
                    let entries = match fs::read_dir(&d) {
                        Ok(e) => e,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(io_err(&d)(e)),
                    };
                    for e in entries {
                        let e = e.map_err(io_err(&d))?;
                        let ft = e.file_type().map_err(io_err(&d))?;
                        let p = e.path();
                        if ft.is_dir() {
                            stack.push(p);
                        } else if ft.is_file() && !is_temp_name(&e.file_name().to_string_lossy()) {
                            let len = e.metadata().map_err(io_err(&p))?.len();
                            let rel = p
                                .strip_prefix(root)
                                .map(|r| r.to_string_lossy().replace('\\', "/"))
                                .unwrap_or_default();
                            out.push((rel, len));
                        }
                    }
                }
            }
            Backend::Object {
                store, prefix, rt, ..
            } => {
                let s = store.clone();
                let under = Self::obj_path(prefix, dir);
                let base = prefix.clone();
                let metas = block_on(rt, async move {
                    s.list(Some(&under)).try_collect::<Vec<_>>().await
                })
                .map_err(obj_err(dir))?;
                for m in metas {
                    let Some(parts) = m.location.prefix_match(&base) else {
                        continue;
                    };
                    let rel = parts.map(|p| p.as_ref().to_string()).collect::<Vec<_>>();
                    if rel.last().is_some_and(|n| is_temp_name(n)) {
                        continue;
                    }
                    out.push((rel.join("/"), m.size));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes files; one already gone is not an error.
    pub fn delete(&self, rels: &[String]) -> Result<()> {
        match &*self.inner {
            Backend::Local { root } => {
                let mut dirs = Vec::new();
                for rel in rels {
                    let path = root.join(rel);
                    match fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io_err(&path)(e)),
                    }
                    if let Some(d) = path.parent() {
                        dirs.push(d.to_path_buf());
                    }
                }
                // Directories left empty go too (a compacted or dropped partition), up to
                // the root; one that is not empty stops the walk. A writer that loses its
                // new directory to this retries (`create_file`).
                dirs.sort();
                dirs.dedup();
                for d in dirs {
                    let mut cur = d.as_path();
                    while cur != root.as_path() && cur.starts_with(root) {
                        if fs::remove_dir(cur).is_err() {
                            break;
                        }
                        match cur.parent() {
                            Some(p) => cur = p,
                            None => break,
                        }
                    }
                }
                Ok(())
            }
            Backend::Object {
                store, prefix, rt, ..
            } => {
                let s = store.clone();
                let paths: Vec<ObjPath> = rels.iter().map(|r| Self::obj_path(prefix, r)).collect();
                block_on(rt, async move {
                    for p in paths {
                        match s.delete(&p).await {
                            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(())
                })
                .map_err(obj_err("deleting files"))
            }
        }
    }

    /// Moves a file (quarantine of an unlisted file); on a bucket, a copy then a delete.
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        match &*self.inner {
            Backend::Local { root } => {
                let (a, b) = (root.join(from), root.join(to));
                let dir = b.parent().unwrap_or(root);
                fs::create_dir_all(dir).map_err(io_err(dir))?;
                fs::rename(&a, &b).map_err(io_err(&b))?;
                sync_dirs_up_to(dir, root)?;
                if let Some(d) = a.parent() {
                    super::parquet::sync_dir(d)?;
                }
                Ok(())
            }
            Backend::Object {
                store, prefix, rt, ..
            } => {
                let s = store.clone();
                let (a, b) = (Self::obj_path(prefix, from), Self::obj_path(prefix, to));
                block_on(rt, async move { s.rename(&a, &b).await }).map_err(obj_err(from))
            }
        }
    }

    /// Where a writer encodes `rel` before [`Store::publish`]: a temporary name beside it
    /// on a local disk, a file in the local staging directory for a bucket. Its directory
    /// exists.
    pub fn staging_path(&self, rel: &str) -> Result<PathBuf> {
        let path = match &*self.inner {
            Backend::Local { root } => temp_path(&root.join(rel)),
            Backend::Object { staging, .. } => {
                staging.join(format!(".{}.tmp", rel.replace(['/', '\\'], "%")))
            }
        };
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        Ok(path)
    }

    /// Makes staged files durable and visible under their names, in one step for many
    /// (local: one `syncfs` from [`super::parquet::SYNCFS_MIN_FILES`] files on; bucket:
    /// concurrent uploads). The staging files are gone afterwards, whatever the outcome.
    pub fn publish(&self, files: &[(PathBuf, String)]) -> Result<()> {
        let result = self.publish_inner(files);
        for (tmp, _) in files {
            let _ = fs::remove_file(tmp);
        }
        result
    }

    fn publish_inner(&self, files: &[(PathBuf, String)]) -> Result<()> {
        match &*self.inner {
            Backend::Local { root } => {
                let use_syncfs =
                    cfg!(target_os = "linux") && files.len() >= super::parquet::SYNCFS_MIN_FILES;
                if use_syncfs {
                    sync_fs(root)?;
                } else {
                    for (tmp, _) in files {
                        File::open(tmp)
                            .and_then(|f| f.sync_all())
                            .map_err(io_err(tmp))?;
                    }
                }
                let mut dirs: Vec<PathBuf> = Vec::new();
                for (tmp, rel) in files {
                    let path = root.join(rel);
                    fs::rename(tmp, &path).map_err(io_err(&path))?;
                    if let Some(d) = path.parent() {
                        dirs.push(d.to_path_buf());
                    }
                }
                if use_syncfs {
                    sync_fs(root)?;
                } else {
                    dirs.sort();
                    dirs.dedup();
                    for d in dirs {
                        sync_dirs_up_to(&d, root)?;
                    }
                }
                Ok(())
            }
            Backend::Object {
                store,
                prefix,
                rt,
                cache,
                ..
            } => {
                let jobs: Vec<(PathBuf, ObjPath)> = files
                    .iter()
                    .map(|(tmp, rel)| (tmp.clone(), Self::obj_path(prefix, rel)))
                    .collect();
                let s = store.clone();
                block_on(rt, async move {
                    futures::stream::iter(jobs.into_iter().map(|(tmp, p)| {
                        let s = s.clone();
                        async move { upload(&s, &tmp, &p).await }
                    }))
                    .buffer_unordered(CONCURRENCY)
                    .try_collect::<Vec<()>>()
                    .await
                })?;
                // What was just uploaded is what queries read next: keep it.
                if let Some(c) = cache {
                    for (tmp, rel) in files {
                        if let Ok(m) = fs::metadata(tmp) {
                            c.insert(rel, m.len(), tmp);
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

use futures::StreamExt;

/// Downloads a whole object into `to`, streaming; returns its size.
async fn download(
    store: &Arc<dyn ObjectStore>,
    from: &ObjPath,
    to: &Path,
) -> std::result::Result<u64, object_store::Error> {
    use tokio::io::AsyncWriteExt;
    let io = |e: std::io::Error| object_store::Error::Generic {
        store: "meridian-cache",
        source: Box::new(e),
    };
    let mut out = tokio::fs::File::create(to).await.map_err(io)?;
    let mut stream = store.get(from).await?.into_stream();
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        n += chunk.len() as u64;
        out.write_all(&chunk).await.map_err(io)?;
    }
    out.flush().await.map_err(io)?;
    Ok(n)
}

/// Uploads a local file: one PUT when small, otherwise multipart, read a part at a time (a
/// large compaction output is never held whole in memory).
async fn upload(store: &Arc<dyn ObjectStore>, tmp: &Path, to: &ObjPath) -> Result<()> {
    use tokio::io::AsyncReadExt;
    let what = to.to_string();
    let mut file = tokio::fs::File::open(tmp).await.map_err(io_err(tmp))?;
    let len = file.metadata().await.map_err(io_err(tmp))?.len();
    if len <= PART_BYTES as u64 {
        let mut data = Vec::with_capacity(len as usize);
        file.read_to_end(&mut data).await.map_err(io_err(tmp))?;
        store
            .put(to, PutPayload::from(data))
            .await
            .map_err(obj_err(&what))?;
        return Ok(());
    }
    let mut up = store.put_multipart(to).await.map_err(obj_err(&what))?;
    let result = async {
        loop {
            let mut part = Vec::with_capacity(PART_BYTES);
            (&mut file)
                .take(PART_BYTES as u64)
                .read_to_end(&mut part)
                .await
                .map_err(io_err(tmp))?;
            if part.is_empty() {
                break;
            }
            up.put_part(PutPayload::from(part))
                .await
                .map_err(obj_err(&what))?;
        }
        up.complete().await.map_err(obj_err(&what))
    }
    .await;
    if let Err(e) = result {
        let _ = up.abort().await;
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bucket endpoint that accepts connections and never answers (a stalled network path,
    /// a hung proxy): every call fails within `storage.request_timeout` and
    /// `storage.retry_timeout` instead of waiting for ever.
    #[test]
    fn a_bucket_that_never_answers_fails_calls_within_the_configured_bounds() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepted connections are kept open and never read from.
        let held = std::thread::spawn(move || {
            let mut kept = Vec::new();
            for c in listener.incoming().take(64) {
                match c {
                    Ok(c) => kept.push(c),
                    Err(_) => break,
                }
            }
            kept
        });
        let dir = tempfile::tempdir().unwrap();
        let opts = S3Config {
            endpoint: Some(format!("http://{addr}")),
            region: Some("us-east-1".into()),
            access_key_id: Some("k".into()),
            secret_access_key: Some("s".into()),
            allow_http: Some(true),
            request_timeout: std::time::Duration::from_millis(300),
            retry_timeout: std::time::Duration::from_millis(900),
            ..S3Config::default()
        };
        let s = Store::s3(
            "s3://hung/r",
            &opts,
            &dir.path().join("staging"),
            &dir.path().join("cache"),
        )
        .unwrap();
        let started = std::time::Instant::now();
        let put = s.put_new("_manifest/1.edit.json", Bytes::from_static(b"{}"));
        let read = s.read("_manifest/1.edit.json");
        let took = started.elapsed();
        // Timed out, not refused for another reason (an option lost on the way).
        for r in [put.map(|_| ()), read.map(|_| ())] {
            let e = format!(
                "{:?}",
                r.expect_err("a call to a bucket that never answers")
            );
            assert!(e.contains("Timeout"), "{e}");
        }
        // Each call: tries of 300 ms until 900 ms have passed, plus backoff between them.
        assert!(took < std::time::Duration::from_secs(8), "{took:?}");
        drop(s);
        drop(held);
    }

    #[test]
    fn local_put_new_refuses_an_existing_file_and_lists_without_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::local(dir.path());
        assert!(s.put_new("m/v1", Bytes::from_static(b"a")).unwrap());
        assert!(!s.put_new("m/v1", Bytes::from_static(b"b")).unwrap());
        assert_eq!(s.read("m/v1").unwrap().unwrap(), Bytes::from_static(b"a"));
        assert_eq!(s.read("m/none").unwrap(), None);
        let tmp = s.staging_path("d/x.parquet").unwrap();
        fs::write(&tmp, b"12345").unwrap();
        assert_eq!(s.list("").unwrap(), vec![("m/v1".to_string(), 1)]);
        s.publish(&[(tmp.clone(), "d/x.parquet".to_string())])
            .unwrap();
        assert!(!tmp.exists());
        assert_eq!(s.list("d").unwrap(), vec![("d/x.parquet".to_string(), 5)]);
        let f = s.open("d/x.parquet", None).unwrap();
        let mut buf = [0u8; 3];
        f.read_exact_at(&mut buf, 1).unwrap();
        assert_eq!(&buf, b"234");
        s.delete(&["d/x.parquet".into(), "gone".into()]).unwrap();
        assert!(s.list("d").unwrap().is_empty());
        // Directories a delete leaves empty go, up to the root, and no further than one
        // that still holds something.
        assert!(
            s.put_new("db/cpu/p=1/a.parquet", Bytes::from_static(b"a"))
                .unwrap()
        );
        assert!(
            s.put_new("db/mem/b.parquet", Bytes::from_static(b"b"))
                .unwrap()
        );
        s.delete(&["db/cpu/p=1/a.parquet".into()]).unwrap();
        assert!(!dir.path().join("db/cpu").exists());
        assert!(dir.path().join("db/mem/b.parquet").exists());
    }
}
