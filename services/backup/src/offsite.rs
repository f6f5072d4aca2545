//! Off-site copies on S3-compatible stores with `object_store`: a backup uploaded as a
//! streamed multipart upload and read back to check its sha256, fetched back (checked
//! before it takes the backup's place), and removed (decision 0017).

use crate::{Archiver, BackupError};
use berth_contracts::steps::{
    BackupSource, CopyMade, DeleteCopySpec, FetchSpec, TargetSpec, UploadSpec,
};
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ObjectStore, RetryConfig, WriteMultipart};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Log<'a> = &'a (dyn Fn(String) + Send + Sync);

/// Parts of a multipart upload (S3 wants at least 5 MiB but for the last).
const PART: usize = 8 << 20;
/// Parts in flight at once: bounds the memory an upload holds to about 4 parts.
const PARTS_IN_FLIGHT: usize = 4;
/// A progress line per this many bytes.
const PROGRESS_EVERY: u64 = 256 << 20;
const MB: f64 = 1_048_576.0;

/// The store of a target, with its secret access key opened from the step's secrets.
pub fn store(t: &TargetSpec, secret_access_key: &str) -> Result<Arc<dyn ObjectStore>, BackupError> {
    let s = AmazonS3Builder::new()
        .with_endpoint(&t.endpoint)
        .with_bucket_name(&t.bucket)
        .with_region(&t.region)
        .with_access_key_id(&t.access_key_id)
        .with_secret_access_key(secret_access_key)
        // Any S3-compatible store: path-style requests work everywhere.
        .with_virtual_hosted_style_request(false)
        // The API accepts http:// on loopback only.
        .with_allow_http(t.endpoint.starts_with("http://"))
        // The step is retried by the broker's tiers; a request a few times here.
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 3,
            retry_timeout: Duration::from_secs(60),
        })
        .build()
        .map_err(|e| BackupError::permanent(format!("target `{}`: {e}", t.name)))?;
    Ok(Arc::new(s))
}

fn key(k: &str) -> Result<ObjectPath, BackupError> {
    ObjectPath::parse(k).map_err(|e| BackupError::bad(format!("object key `{k}`: {e}")))
}

/// A store's error: refused credentials, a missing bucket or object are permanent; the
/// rest (network, 5xx after object_store's own retries) is tried again.
fn store_err(t: &TargetSpec, what: &str, e: object_store::Error) -> BackupError {
    use object_store::Error as E;
    let m = format!(
        "target `{}` ({} bucket {}): {what}: {e}",
        t.name, t.endpoint, t.bucket
    );
    let text = e.to_string();
    let permanent = matches!(
        e,
        E::NotFound { .. }
            | E::PermissionDenied { .. }
            | E::Unauthenticated { .. }
            | E::InvalidPath { .. }
            | E::NotSupported { .. }
    ) || [
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "NoSuchBucket",
    ]
    .iter()
    .any(|c| text.contains(c));
    if permanent {
        BackupError::Permanent(m)
    } else {
        BackupError::Transient(m)
    }
}

fn local(a: &Archiver, source: &BackupSource) -> Result<PathBuf, BackupError> {
    match source {
        BackupSource::File(f) => crate::backup_file(a, f),
        BackupSource::Path(p) => crate::archive::inside_backups_dir(a, p),
    }
}

/// The object's size and sha256, read back streamed.
async fn read_back(
    store: &dyn ObjectStore,
    t: &TargetSpec,
    path: &ObjectPath,
) -> Result<(u64, String), BackupError> {
    let got = store
        .get(path)
        .await
        .map_err(|e| store_err(t, "read back", e))?;
    let mut stream = got.into_stream();
    let (mut h, mut n) = (Sha256::new(), 0u64);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| store_err(t, "read back", e))?;
        n += chunk.len() as u64;
        h.update(&chunk);
    }
    Ok((n, hex::encode(h.finalize())))
}

/// `backup-upload`: the backup's file streamed up in parts, hashed as it is read, then
/// read back from the store; the step succeeds only if the object's sha256 is the file's
/// (and the spec's, when the backup's recorded sha256 is known).
pub async fn upload(
    a: &Archiver,
    spec: &UploadSpec,
    secret: &str,
    log: Log<'_>,
) -> Result<Uploaded, BackupError> {
    let t = &spec.target;
    let file = local(a, &spec.source)?;
    let path = key(&spec.key)?;
    let store = store(t, secret)?;
    let started = Instant::now();
    log(format!(
        "uploading {} to target `{}`: {}/{}",
        file.display(),
        t.name,
        t.bucket,
        spec.key
    ));
    let mut f = tokio::fs::File::open(&file)
        .await
        .map_err(|e| BackupError::permanent(format!("open {}: {e}", file.display())))?;
    let upload = store
        .put_multipart(&path)
        .await
        .map_err(|e| store_err(t, "start the upload", e))?;
    let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
    let (mut h, mut sent, mut next_note) = (Sha256::new(), 0u64, PROGRESS_EVERY);
    let mut buf = vec![0u8; 1 << 20];
    let sent_all: Result<(), BackupError> = async {
        loop {
            let n = f
                .read(&mut buf)
                .await
                .map_err(|e| BackupError::transient(format!("read {}: {e}", file.display())))?;
            if n == 0 {
                return Ok(());
            }
            w.wait_for_capacity(PARTS_IN_FLIGHT)
                .await
                .map_err(|e| store_err(t, "upload a part", e))?;
            h.update(&buf[..n]);
            w.write(&buf[..n]);
            sent += n as u64;
            if sent >= next_note {
                log(format!("uploaded {:.0} MB", sent as f64 / MB));
                next_note += PROGRESS_EVERY;
            }
        }
    }
    .await;
    if let Err(e) = sent_all {
        // Parts already stored are abandoned with the upload (best effort).
        let _ = w.abort().await;
        return Err(e);
    }
    w.finish()
        .await
        .map_err(|e| store_err(t, "complete the upload", e))?;
    let file_sha = hex::encode(h.finalize());
    let secs = started.elapsed().as_secs_f64();
    let (size, sha256) = read_back(&*store, t, &path).await?;
    if size != sent || sha256 != file_sha {
        return Err(BackupError::transient(format!(
            "target `{}`: {} read back as {size} bytes with sha256 {sha256}, \
             but {sent} bytes with sha256 {file_sha} were sent",
            t.name, spec.key
        )));
    }
    if let Some(want) = &spec.sha256
        && *want != sha256
    {
        return Err(BackupError::permanent(format!(
            "{} has sha256 {sha256}, not the backup's {want}: not copied",
            file.display()
        )));
    }
    Ok(Uploaded {
        made: CopyMade {
            target: t.name.clone(),
            key: spec.key.clone(),
            path: file.display().to_string(),
            size: i64::try_from(size).unwrap_or(i64::MAX),
            sha256,
        },
        secs,
    })
}

/// What an upload did: the copy, and how long sending it took.
#[derive(Debug, Clone, PartialEq)]
pub struct Uploaded {
    pub made: CopyMade,
    pub secs: f64,
}

impl Uploaded {
    /// The line the task log ends the step with (sent with the result, so it is there when
    /// the task ends).
    pub fn summary(&self) -> String {
        let m = &self.made;
        let mb = m.size as f64 / MB;
        format!(
            "copied to target `{}` as {}: {mb:.1} MB in {:.1} s ({:.1} MB/s); sha256 {} read back",
            m.target,
            m.key,
            self.secs,
            mb / self.secs.max(1e-9),
            m.sha256
        )
    }
}

/// `backup-fetch`: when the backup's file is gone, its copy is downloaded beside it, its
/// sha256 checked, and renamed into place; a file still there is left alone. Returns
/// whether it fetched.
pub async fn fetch(
    a: &Archiver,
    spec: &FetchSpec,
    secret: &str,
    log: Log<'_>,
) -> Result<bool, BackupError> {
    let t = &spec.target;
    let dest = crate::archive::inside_backups_dir(a, &spec.path)?;
    if dest.exists() {
        log(format!("{} is here: nothing to fetch", dest.display()));
        return Ok(false);
    }
    let path = key(&spec.key)?;
    let store = store(t, secret)?;
    log(format!(
        "{} is gone: fetching it from target `{}` ({}/{})",
        dest.display(),
        t.name,
        t.bucket,
        spec.key
    ));
    let started = Instant::now();
    let name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| BackupError::bad("fetch: a path without a file name"))?;
    let tmp = dest.with_file_name(format!(".{name}.berth-fetch"));
    let got = store
        .get(&path)
        .await
        .map_err(|e| store_err(t, "fetch", e))?;
    let fetched: Result<(u64, String), BackupError> = async {
        let mut out = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| BackupError::transient(format!("create {}: {e}", tmp.display())))?;
        let mut stream = got.into_stream();
        let (mut h, mut n) = (Sha256::new(), 0u64);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| store_err(t, "fetch", e))?;
            h.update(&chunk);
            n += chunk.len() as u64;
            out.write_all(&chunk)
                .await
                .map_err(|e| BackupError::transient(format!("write {}: {e}", tmp.display())))?;
        }
        out.sync_all()
            .await
            .map_err(|e| BackupError::transient(format!("sync {}: {e}", tmp.display())))?;
        Ok((n, hex::encode(h.finalize())))
    }
    .await;
    let (size, sha256) = match fetched {
        Ok(x) => x,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
    };
    if sha256 != spec.sha256 {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(BackupError::permanent(format!(
            "the copy {} on target `{}` has sha256 {sha256}, not the backup's {}: not used",
            spec.key, t.name, spec.sha256
        )));
    }
    tokio::fs::rename(&tmp, &dest)
        .await
        .map_err(|e| BackupError::transient(format!("rename into {}: {e}", dest.display())))?;
    log(format!(
        "fetched {} ({:.1} MB in {:.1} s), sha256 {sha256} as recorded",
        dest.display(),
        size as f64 / MB,
        started.elapsed().as_secs_f64()
    ));
    Ok(true)
}

/// `backup-copy-delete`: the object goes; one already gone is fine.
pub async fn delete_copy(
    spec: &DeleteCopySpec,
    secret: &str,
    log: Log<'_>,
) -> Result<(), BackupError> {
    let t = &spec.target;
    let path = key(&spec.key)?;
    let store = store(t, secret)?;
    match store.delete(&path).await {
        Ok(()) => log(format!("removed {} from target `{}`", spec.key, t.name)),
        Err(object_store::Error::NotFound { .. }) => log(format!(
            "{} is already gone from target `{}`",
            spec.key, t.name
        )),
        Err(e) => return Err(store_err(t, "delete", e)),
    }
    Ok(())
}
