//! The steps restore, migrate and clone share: a backup deployed beside its target and
//! swapped in, each step taken back on a later failure; and the steps that end them.

use super::PlannedStep;
use crate::facts::SiteFacts;
use berth_contracts::SecretNeeds;
use berth_contracts::steps::SiteDbSecret;
use berth_contracts::steps::{
    BackupSource, BackupStep, CleanupSpec, DbStep, DnsStep, ExtractDb, ExtractSpec, HttpStep,
    PackagesSpec, SiteSpec, SwapSpec,
};

/// The maintenance page, kept for its compensation to put the site's vhost back.
pub(super) fn maintenance_step(web: &str, spec: &SiteSpec) -> PlannedStep {
    PlannedStep::http(web, HttpStep::SiteMaintenance(spec.clone()))
        .undo(HttpStep::SiteVhostRestore(spec.clone()))
}

/// The deploy: the new database, the backup unpacked beside the target and imported into
/// it, the swap, `updatedb` (with the file paths on a new uri), the new vhost. Returns the
/// swap, which the cleanup takes. `password`: where the new database's password comes
/// from (the task's secret; a drill's is derived).
pub(super) fn deploy_steps(
    web: &str,
    db_server: &str,
    next: &SiteSpec,
    source: BackupSource,
    new_dir: &str,
    renamed_from: Option<&str>,
    password: SiteDbSecret,
) -> (Vec<PlannedStep>, SwapSpec) {
    let site_db = SecretNeeds {
        site_db: Some(password),
        ..SecretNeeds::NONE
    };
    let admin_and_site_db = SecretNeeds {
        db_admin: true,
        ..site_db
    };
    let extract = ExtractSpec {
        source,
        target_dir: new_dir.to_string(),
        db: ExtractDb {
            host: next.db.host.clone(),
            port: next.db.port,
            name: next.db.name.clone(),
            user: next.db.user.clone(),
        },
    };
    let swap = SwapSpec {
        site: next.clone(),
        new_dir: new_dir.to_string(),
        renamed_from: renamed_from.map(str::to_string),
    };
    let steps = vec![
        PlannedStep::db(db_server, DbStep::SiteDbCreate(next.clone()))
            .undo(DbStep::SiteDbDrop(next.clone()))
            .secrets(admin_and_site_db),
        PlannedStep::backup(web, BackupStep::BackupExtract(extract.clone()))
            .undo(BackupStep::BackupExtractRemove(extract))
            .secrets(site_db),
        PlannedStep::http(web, HttpStep::SiteSwap(swap.clone()))
            .undo(HttpStep::SiteSwapBack(swap.clone())),
        PlannedStep::http(web, HttpStep::SiteUpdatedb(swap.clone())).secrets(site_db),
        PlannedStep::http(web, HttpStep::SiteVhost(next.clone()))
            .undo(HttpStep::SiteVhostRestore(next.clone()))
            .secrets(site_db),
    ];
    (steps, swap)
}

/// The steps after the deploy: the package map, the old database dropped (the point of
/// no return) and a cleanup that never fails.
pub(super) fn finish_steps(
    s: &SiteFacts,
    old: &SiteSpec,
    next: &SiteSpec,
    cleanup: CleanupSpec,
) -> Vec<PlannedStep> {
    let web = s.web();
    vec![
        PlannedStep::http(
            web,
            HttpStep::SitePackages(PackagesSpec {
                site: next.clone(),
                login: false,
            }),
        )
        .secrets(SecretNeeds::SITE_DB_NEXT),
        PlannedStep::db(&s.db_server.name, DbStep::SiteDbDrop(old.clone()))
            .secrets(SecretNeeds::DB_ADMIN),
        PlannedStep::http(web, HttpStep::SiteCleanup(cleanup)),
    ]
}

/// A new site's last steps: its records (when berth manages its DNS; taken back by their
/// removal), then its package map with a first login link.
pub(super) fn records_then_packages(
    dns_managed: bool,
    web: &str,
    spec: &SiteSpec,
    packages_need: SecretNeeds,
) -> Vec<PlannedStep> {
    let mut steps = Vec::new();
    if dns_managed {
        steps.push(
            PlannedStep::dns(web, DnsStep::SiteRecords(spec.clone()))
                .undo(DnsStep::SiteRecordsRemove(spec.clone())),
        );
    }
    steps.push(
        PlannedStep::http(
            web,
            HttpStep::SitePackages(PackagesSpec {
                site: spec.clone(),
                login: true,
            }),
        )
        .secrets(packages_need),
    );
    steps
}
