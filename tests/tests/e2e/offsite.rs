//! Off-site backup copies on a real S3-compatible server (moto_server, authentication on):
//! a backup lands in the bucket with the backup's sha256 (read back with an independent
//! client), a restore fetches it back when the local file is gone and serves the site's
//! data again, a backup-delete removes the copy, wrong credentials fail the upload with a
//! clear log, and the secret access key shows in no API answer or task log. A target with a
//! retention of its own keeps the copies a local prune removes, and a restore serves a
//! backup whose file was pruned.

use berth_contracts::TaskStatus;
use berth_test_servers::moto::Moto;
use berth_tests::{World, WorldOptions, failed_at, log_of};
use futures_util::StreamExt;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const BUCKET: &str = "berth-offsite";

struct Offsite {
    w: World,
    moto: Moto,
    uri: String,
    /// Every API answer seen, to look for the secret in.
    answers: String,
}

async fn offsite() -> Offsite {
    let w = World::with_platform(WorldOptions::web(false)).await;
    let moto = Moto::start(&w.dir.join("moto"), BUCKET).expect("moto_server");
    let uri = w.site_uri("os");
    w.installed_on_platform(&uri).await;
    Offsite {
        w,
        moto,
        uri,
        answers: String::new(),
    }
}

impl Offsite {
    async fn get(&mut self, path: &str) -> Value {
        let v = self.w.get_json(path).await;
        self.answers.push_str(&v.to_string());
        v
    }

    async fn add_target(&mut self, name: &str, secret: &str) -> (u16, Value) {
        self.add_target_with(name, secret, json!({"prefix": "berth/prod"}))
            .await
    }

    /// A target with `extra` fields (its prefix, a retention) over the defaults.
    async fn add_target_with(&mut self, name: &str, secret: &str, extra: Value) -> (u16, Value) {
        let mut body = json!({"name": name, "kind": "s3", "endpoint": self.moto.endpoint(),
            "bucket": BUCKET, "region": "us-east-1",
            "access_key_id": self.moto.access_key_id, "secret_access_key": secret});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, v) = self.w.post_json("/api/v1/backup-targets", &body).await;
        self.answers.push_str(&v.to_string());
        (status, v)
    }

    async fn run(&mut self, task_type: &str, args: Value) -> berth_contracts::Task {
        let t = self.w.run(task_type, &self.uri, args).await;
        self.answers.push_str(&serde_json::to_string(&t).unwrap());
        t
    }

    async fn backups(&mut self) -> Vec<Value> {
        let uri = self.uri.clone();
        self.get(&format!("/api/v1/sites/{uri}/backups"))
            .await
            .as_array()
            .unwrap()
            .clone()
    }

    /// An S3 client of its own, with the credentials moto made.
    fn s3(&self) -> impl ObjectStore {
        AmazonS3Builder::new()
            .with_endpoint(self.moto.endpoint())
            .with_bucket_name(BUCKET)
            .with_region("us-east-1")
            .with_access_key_id(&self.moto.access_key_id)
            .with_secret_access_key(&self.moto.secret_access_key)
            .with_allow_http(true)
            .build()
            .unwrap()
    }

    /// The object's sha256, or `None` if it is not there.
    async fn object_sha256(&self, key: &str) -> Option<String> {
        let got = match self.s3().get(&object_store::path::Path::from(key)).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return None,
            Err(e) => panic!("reading {key} back: {e}"),
        };
        let mut h = Sha256::new();
        let mut s = got.into_stream();
        while let Some(chunk) = s.next().await {
            h.update(chunk.unwrap());
        }
        Some(hex::encode(h.finalize()))
    }

    fn page(&self) -> String {
        let (status, body) = self.w.page(&self.uri);
        assert_eq!(status, 200, "{body}");
        body
    }
}

fn file_sha256(p: &std::path::Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_copy_lands_in_s3_with_its_checksum_and_a_restore_fetches_it_when_the_file_is_gone() {
    let mut o = offsite().await;
    let secret = o.moto.secret_access_key.clone();
    let (status, target) = o.add_target("offsite", &secret.clone()).await;
    assert_eq!(status, 201, "{target}");
    assert_eq!(target["copies"], 0);
    assert!(target.get("secret_access_key").is_none(), "{target}");
    // A name taken, an unknown target named by a backup: refused, saying which.
    let (status, v) = o.add_target("offsite", &secret).await;
    assert_eq!(status, 409, "{v}");
    let r =
        o.w.post(
            "/api/v1/tasks",
            &json!({"type": "backup", "target": o.uri, "args": {"targets": ["nowhere"]}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let problem: Value = r.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("`nowhere`"),
        "{problem}"
    );

    assert!(o.page().contains(&format!("<h1>{}</h1>", o.uri)));
    let t = o
        .run(
            "backup",
            json!({"description": "off-site", "targets": ["offsite"]}),
        )
        .await;
    assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
    let log = log_of(&t);
    assert!(log.contains("read back"), "{log}");
    let b = o.backups().await[0].clone();
    let copy = &b["copies"][0];
    assert_eq!(copy["target"], "offsite", "{b}");
    let file = std::path::Path::new(b["path"].as_str().unwrap())
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let key = format!("berth/prod/{}/{file}", o.uri);
    assert_eq!(copy["object_key"], key.as_str());
    assert_eq!(copy["sha256"], b["sha256"]);
    assert_eq!(copy["size"], b["size"]);
    // The object, read back by a client of our own, is the backup.
    let local = std::path::PathBuf::from(b["path"].as_str().unwrap());
    assert_eq!(
        o.object_sha256(&key).await.as_deref(),
        b["sha256"].as_str(),
        "the object in S3 is not the backup"
    );
    assert_eq!(file_sha256(&local), b["sha256"].as_str().unwrap());
    let shown = o.get("/api/v1/backup-targets/offsite").await;
    assert_eq!(shown["copies"], 1, "{shown}");

    // The site changes; the backup's local file goes; the restore fetches it from S3.
    let db = o.get(&format!("/api/v1/sites/{}", o.uri)).await["db_name"]
        .as_str()
        .unwrap()
        .to_string();
    berth_tests::set_d10_site_name(&db, "Changed since the backup").await;
    assert!(o.page().contains("<h1>Changed since the backup</h1>"));
    std::fs::remove_file(&local).unwrap();
    let t = o
        .run("restore", json!({"backup": b["id"].as_str().unwrap()}))
        .await;
    assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
    let log = log_of(&t);
    assert!(
        log.contains("fetched back from target `offsite`, its sha256 as recorded"),
        "{log}"
    );
    let page = o.page();
    assert!(page.contains(&format!("<h1>{}</h1>", o.uri)), "{page}");
    assert_eq!(
        file_sha256(&local),
        b["sha256"].as_str().unwrap(),
        "the fetched file is the backup"
    );

    // A target with copies on it stays; deleting the backup removes its copy.
    let r =
        o.w.request(reqwest::Method::DELETE, "/api/v1/backup-targets/offsite")
            .send()
            .await
            .unwrap();
    assert_eq!(r.status().as_u16(), 409);
    let problem: Value = r.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("1 copy"),
        "{problem}"
    );
    let t = o
        .run(
            "backup-delete",
            json!({"backup": b["id"].as_str().unwrap()}),
        )
        .await;
    assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
    assert_eq!(
        o.object_sha256(&key).await,
        None,
        "the copy is gone from S3"
    );
    assert!(!local.exists());
    let r =
        o.w.request(reqwest::Method::DELETE, "/api/v1/backup-targets/offsite")
            .send()
            .await
            .unwrap();
    assert_eq!(r.status().as_u16(), 204);

    // The secret is in no answer, no task log.
    o.get("/api/v1/backup-targets").await;
    o.backups().await;
    let tasks = o.get("/api/v1/tasks?limit=50").await;
    for id in tasks["items"].as_array().unwrap() {
        let id = id["id"].as_str().unwrap().to_string();
        o.get(&format!("/api/v1/tasks/{id}")).await;
        o.get(&format!("/api/v1/tasks/{id}/log")).await;
    }
    assert!(
        !o.answers.contains(&secret),
        "the secret access key was answered"
    );
    o.w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_credentials_fail_the_upload_with_a_clear_log_and_keep_the_local_backup() {
    let mut o = offsite().await;
    let wrong = "Wr0ngSecretKeyThatMotoNeverMade/xyz";
    let (status, v) = o.add_target("bad", wrong).await;
    assert_eq!(status, 201, "{v}");
    // Bad settings are refused before anything is saved.
    let (status, v) =
        o.w.post_json(
            "/api/v1/backup-targets",
            &json!({"name": "plain", "endpoint": "http://s3.example.com", "bucket": BUCKET,
                "access_key_id": "k", "secret_access_key": wrong}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("http:// only on loopback"),
        "{v}"
    );
    assert!(!v.to_string().contains(wrong));

    let t = o.run("backup", json!({"targets": ["bad"]})).await;
    failed_at(&t, "backup-upload", "target `bad`");
    let log = log_of(&t);
    assert!(log.contains("SignatureDoesNotMatch"), "{log}");
    // The backup itself is made and recorded, without a copy.
    let backups = o.backups().await;
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(backups[0]["copies"], json!([]));
    assert!(std::path::Path::new(backups[0]["path"].as_str().unwrap()).exists());
    let id = t.id;
    o.get(&format!("/api/v1/tasks/{id}/log")).await;
    o.get("/api/v1/dead-letters").await;
    o.get("/api/v1/backup-targets/bad").await;
    assert!(
        !o.answers.contains(wrong),
        "the secret access key was answered"
    );
    assert!(!o.moto.log().contains(wrong));

    // The CLI: the secret comes from the environment, never argv, and is never printed.
    let endpoint = o.moto.endpoint();
    let add = tokio::process::Command::new(berth_tests::berth_bin())
        .args([
            "backup-targets",
            "add",
            "cli",
            "--endpoint",
            &endpoint,
            "--bucket",
            BUCKET,
            "--access-key-id",
            &o.moto.access_key_id,
        ])
        .envs(o.w.process_env())
        .env("BERTH_TARGET_SECRET_ACCESS_KEY", wrong)
        .output()
        .await
        .unwrap();
    let text = berth_tests::output_text(&add);
    assert!(add.status.success(), "{text}");
    assert!(text.contains(&endpoint) && !text.contains(wrong), "{text}");
    let list = o.w.berth_ok(&["backup-targets", "list"]).await;
    assert!(list.contains("cli") && list.contains("bad"), "{list}");
    let shown =
        o.w.berth_ok(&["--json", "backup-targets", "show", "cli"])
            .await;
    assert!(!shown.contains(wrong), "{shown}");
    let backups = o.w.berth_ok(&["sites", "backups", &o.uri]).await;
    assert!(backups.contains("COPIES"), "{backups}");
    o.w.berth_ok(&["backup-targets", "remove", "cli"]).await;
    let gone = o.w.berth(&["backup-targets", "show", "cli"]).await;
    assert!(!gone.status.success());
    o.w.stop().await;
}

/// The object key of backup `b`'s copy on the target with `prefix`.
fn key_of(prefix: &str, uri: &str, b: &Value) -> String {
    let file = std::path::Path::new(b["path"].as_str().unwrap())
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    format!("{prefix}/{uri}/{file}")
}

fn copy_targets(b: &Value) -> Vec<String> {
    let mut t: Vec<String> = b["copies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["target"].as_str().unwrap().to_string())
        .collect();
    t.sort();
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_targets_own_retention_keeps_copies_a_local_prune_removes_and_a_restore_serves_them() {
    let mut o = offsite().await;
    let secret = o.moto.secret_access_key.clone();
    let (status, v) = o
        .add_target_with("plain", &secret, json!({"prefix": "plain"}))
        .await;
    assert_eq!(status, 201, "{v}");
    assert!(v.get("retention").is_none(), "{v}");
    // A retention without a keep rule is refused; a good one is saved and shown.
    let (status, v) = o
        .add_target_with(
            "vault",
            &secret,
            json!({"prefix": "vault", "retention": {"regular": {}}}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("retention"), "{v}");
    let (status, v) = o
        .add_target_with(
            "vault",
            &secret,
            json!({"prefix": "vault", "retention": {"regular": {"keep_last": 3}}}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["retention"]["regular"]["keep_last"], 3, "{v}");

    // Three backups of three states of the site, each copied to both targets.
    let db = o.get(&format!("/api/v1/sites/{}", o.uri)).await["db_name"]
        .as_str()
        .unwrap()
        .to_string();
    for n in 1..=3 {
        berth_tests::set_d10_site_name(&db, &format!("State {n}")).await;
        let t = o
            .run(
                "backup",
                json!({"description": format!("state {n}"), "targets": ["plain", "vault"]}),
            )
            .await;
        assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
    }
    let before = o.backups().await;
    assert_eq!(before.len(), 3, "{before:?}");
    let (newest, older) = (before[0].clone(), before[1..].to_vec());

    // The preview: locally only the newest stays; the vault keeps all three copies.
    let uri = o.uri.clone();
    let preview = o
        .get(&format!("/api/v1/sites/{uri}/retention?keep_last=1"))
        .await;
    let verdicts: Vec<bool> = preview["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["keep"].as_bool().unwrap())
        .collect();
    assert_eq!(verdicts, [true, false, false], "{preview}");
    let targets = preview["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 1, "{preview}");
    assert_eq!(targets[0]["target"], "vault");
    assert!(
        targets[0]["copies"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["keep"] == true && c["reasons"][0].is_string()),
        "{preview}"
    );

    let t = o.run("prune", json!({"regular": {"keep_last": 1}})).await;
    assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
    // The older files and their copies on `plain` are gone; the vault still has all three.
    for b in &older {
        assert!(!std::path::Path::new(b["path"].as_str().unwrap()).exists());
        assert_eq!(o.object_sha256(&key_of("plain", &uri, b)).await, None);
    }
    for b in &before {
        assert_eq!(
            o.object_sha256(&key_of("vault", &uri, b)).await.as_deref(),
            b["sha256"].as_str(),
            "the vault keeps every copy"
        );
    }
    let after = o.backups().await;
    assert_eq!(after.len(), 3, "pruned locally, kept off-site: {after:?}");
    assert_eq!(after[0]["on_disk"], true);
    assert_eq!(copy_targets(&after[0]), ["plain", "vault"]);
    for b in &after[1..] {
        assert_eq!(b["on_disk"], false, "{b}");
        assert_eq!(copy_targets(b), ["vault"], "{b}");
    }

    // The oldest state, its file pruned, is restored from the vault's copy.
    let oldest = older.last().unwrap();
    assert!(o.page().contains("<h1>State 3</h1>"));
    let t = o
        .run("restore", json!({"backup": oldest["id"].as_str().unwrap()}))
        .await;
    assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
    assert!(
        log_of(&t).contains("fetched back from target `vault`"),
        "{}",
        log_of(&t)
    );
    assert!(o.page().contains("<h1>State 1</h1>"), "{}", o.page());
    let restored = o
        .backups()
        .await
        .into_iter()
        .find(|b| b["id"] == oldest["id"])
        .unwrap();
    assert_eq!(restored["on_disk"], true, "fetched back: {restored}");
    assert_eq!(
        file_sha256(std::path::Path::new(oldest["path"].as_str().unwrap())),
        oldest["sha256"].as_str().unwrap()
    );

    // A drill of the other pruned backup fetches its file back from the vault, too (the
    // site made to serve that state again: a drill checks the copy serves what it does).
    let middle = &older[0];
    let db = o.get(&format!("/api/v1/sites/{uri}")).await["db_name"]
        .as_str()
        .unwrap()
        .to_string();
    berth_tests::set_d10_site_name(&db, "State 2").await;
    let t = o
        .run("drill", json!({"backup": middle["id"].as_str().unwrap()}))
        .await;
    assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
    assert!(
        log_of(&t).contains("fetched back from target `vault`"),
        "{}",
        log_of(&t)
    );
    let drilled = o
        .backups()
        .await
        .into_iter()
        .find(|b| b["id"] == middle["id"])
        .unwrap();
    assert!(drilled["verified_at"].is_string(), "{drilled}");

    // The vault's retention tightened (by the CLI): the next prune forgets its older
    // copies, and a backup with neither file nor copy is gone.
    let bad =
        o.w.request(reqwest::Method::PATCH, "/api/v1/backup-targets/vault")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
    assert!(
        [400, 422].contains(&bad.status().as_u16()),
        "an empty change is refused"
    );
    let shown =
        o.w.berth_ok(&["backup-targets", "retention", "vault", "--keep-last", "1"])
            .await;
    assert!(shown.contains("\"keep_last\":1"), "{shown}");
    let t = o.run("prune", json!({"regular": {"keep_last": 1}})).await;
    assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
    for b in &older {
        assert_eq!(o.object_sha256(&key_of("vault", &uri, b)).await, None);
    }
    assert_eq!(
        o.object_sha256(&key_of("vault", &uri, &newest))
            .await
            .as_deref(),
        newest["sha256"].as_str()
    );
    let left: Vec<Value> = o.backups().await;
    assert!(
        left.iter()
            .all(|b| older.iter().all(|o| o["id"] != b["id"])),
        "the older backups are gone: {left:?}"
    );
    assert!(left.iter().any(|b| b["id"] == newest["id"]));
    // Dropped: copies follow their backups again.
    let none =
        o.w.berth_ok(&["backup-targets", "retention", "vault", "--none"])
            .await;
    assert!(
        none.contains("none (copies go with their backups)"),
        "{none}"
    );
    o.w.stop().await;
}
