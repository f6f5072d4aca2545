//! The backup worker's off-site steps against a real S3-compatible server (moto_server,
//! authentication on): a multipart upload read back, a copy fetched only with the backup's
//! checksum, a copy removed twice.

use berth_backup::offsite::{delete_copy, fetch, upload};
use berth_backup::{Archiver, BackupError};
use berth_contracts::steps::{BackupSource, DeleteCopySpec, FetchSpec, TargetSpec, UploadSpec};
use berth_test_servers::moto::Moto;
use sha2::{Digest, Sha256};
use std::sync::Mutex;

fn target(m: &Moto) -> TargetSpec {
    TargetSpec {
        name: "offsite".into(),
        endpoint: m.endpoint(),
        bucket: m.bucket.clone(),
        region: "us-east-1".into(),
        access_key_id: m.access_key_id.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_goes_up_in_parts_comes_back_only_with_its_checksum_and_goes() {
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start(&dir.path().join("moto"), "worker-test").unwrap();
    let backups = dir.path().join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    let a = Archiver::new(&backups, "mariadb-dump", "mariadb");
    // 20 MiB of varied bytes: three parts of the multipart upload.
    let data: Vec<u8> = (0..20u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let file = backups.join("a.test-20261204T101010Z-ab12.tar.zst");
    std::fs::write(&file, &data).unwrap();
    let sha = hex::encode(Sha256::digest(&data));
    let secret = moto.secret_access_key.clone();
    let lines = Mutex::new(Vec::<String>::new());
    let log = |l: String| lines.lock().unwrap().push(l);
    let key = "p/a.test/a.test-20261204T101010Z-ab12.tar.zst".to_string();

    let spec = UploadSpec {
        target: target(&moto),
        source: BackupSource::File("a.test-20261204T101010Z-ab12".into()),
        key: key.clone(),
        sha256: None,
    };
    let up = upload(&a, &spec, &secret, &log).await.unwrap();
    assert_eq!(up.made.sha256, sha);
    assert_eq!(up.made.size, data.len() as i64);
    assert_eq!(up.made.path, file.display().to_string());

    // A backup whose recorded checksum is not the file's is not copied.
    let wrong = UploadSpec {
        sha256: Some("00".repeat(32)),
        ..spec.clone()
    };
    let e = upload(&a, &wrong, &secret, &log).await.unwrap_err();
    assert!(
        matches!(&e, BackupError::Permanent(m) if m.contains("not the backup's")),
        "{e}"
    );

    // Fetched back only when the file is gone, and only with the backup's checksum.
    let get = |sha256: String| FetchSpec {
        target: target(&moto),
        key: key.clone(),
        path: file.display().to_string(),
        sha256,
    };
    assert!(!fetch(&a, &get(sha.clone()), &secret, &log).await.unwrap());
    std::fs::remove_file(&file).unwrap();
    let e = fetch(&a, &get("11".repeat(32)), &secret, &log)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, BackupError::Permanent(m) if m.contains("not used")),
        "{e}"
    );
    assert!(
        !file.exists(),
        "a copy with another checksum took the backup's place"
    );
    assert_eq!(
        std::fs::read_dir(&backups).unwrap().count(),
        0,
        "nothing left behind"
    );
    assert!(fetch(&a, &get(sha.clone()), &secret, &log).await.unwrap());
    assert_eq!(
        hex::encode(Sha256::digest(std::fs::read(&file).unwrap())),
        sha
    );

    // A fetch writes only directly inside the backups directory.
    let mut outside = get(sha.clone());
    outside.path = dir.path().join("elsewhere.tar.zst").display().to_string();
    assert!(fetch(&a, &outside, &secret, &log).await.is_err());
    assert!(!dir.path().join("elsewhere.tar.zst").exists());

    // Removed; removing it again is fine; then it cannot be fetched.
    let del = DeleteCopySpec {
        target: target(&moto),
        key: key.clone(),
    };
    delete_copy(&del, &secret, &log).await.unwrap();
    delete_copy(&del, &secret, &log).await.unwrap();
    std::fs::remove_file(&file).unwrap();
    let e = fetch(&a, &get(sha.clone()), &secret, &log)
        .await
        .unwrap_err();
    assert!(e.is_permanent(), "{e}");
    let all = lines.lock().unwrap().join("\n");
    assert!(!all.contains(&secret), "{all}");
}
