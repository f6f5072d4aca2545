//! `berth-bench tenancy`: what a client-bound token costs on `GET /api/v1/sites`.
//!
//! A test world's database with N sites (rows only, nothing installed) spread evenly over C
//! clients. Timed in the same run, sequentially, R requests each: the admin token listing
//! every site; the admin token listing one client's sites (`?client=`, the same rows a
//! client token gets, without the token's filter); a token bound to that client (its
//! sites, filtered in SQL through `sites_client`).

use crate::stats::Summary;
use anyhow::{Context, Result, ensure};
use berth_secrets::SecretKey;
use berth_store::tokens::{self, NewToken};
use berth_tests::{World, WorldOptions};
use std::time::Instant;

pub struct Config {
    pub sites: usize,
    pub clients: usize,
    pub requests: usize,
}

const SERVER: &str = "server_master";
const PLATFORM: &str = "platform_bench";

async fn seed(world: &World, cfg: &Config) -> Result<uuid::Uuid> {
    let pool = &world.store.pool;
    sqlx::query(
        "INSERT INTO servers (name, host) VALUES ($1, 'bench.example.com') ON CONFLICT DO NOTHING",
    )
    .bind(SERVER)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO platforms (name, root, web_server, status) VALUES ($1, '/var/www/bench', $2, 'verified')",
    )
    .bind(PLATFORM)
    .bind(SERVER)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO clients (id, name) SELECT gen_random_uuid(), 'client' || i
         FROM generate_series(1, $1) i",
    )
    .bind(cfg.clients as i64)
    .execute(pool)
    .await?;
    let key = SecretKey::from_hex(&world.secret_hex)?;
    sqlx::query(
        "INSERT INTO sites (uri, platform, db_server, profile, status, db_name, db_user,
                            db_password_sealed, client_id)
         SELECT 'site' || i || '.bench.example.com', $1, $2, 'standard', 'enabled',
                'site' || i, 'site' || i, $3,
                (SELECT id FROM clients WHERE name = 'client' || (1 + i % $5))
         FROM generate_series(1, $4) i",
    )
    .bind(PLATFORM)
    .bind(SERVER)
    .bind(key.seal(&SecretKey::new_password()))
    .bind(cfg.sites as i64)
    .bind(cfg.clients as i64)
    .execute(pool)
    .await?;
    sqlx::query("ANALYZE sites").execute(pool).await?;
    let (id,): (uuid::Uuid,) = sqlx::query_as("SELECT id FROM clients WHERE name = 'client1'")
        .fetch_one(pool)
        .await?;
    Ok(id)
}

async fn timed(world: &World, token: &str, path: &str, n: usize) -> Result<(Summary, usize)> {
    let mut ms = Vec::with_capacity(n);
    let mut count = 0;
    for _ in 0..n {
        let t = Instant::now();
        let r = world
            .http
            .get(world.url(path))
            .bearer_auth(token)
            .send()
            .await?;
        ensure!(r.status() == 200, "{path}: {}", r.status());
        let v: Vec<serde_json::Value> = r.json().await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        count = v.len();
    }
    Ok((Summary::of(ms), count))
}

pub async fn run(cfg: Config) -> Result<()> {
    let world = World::start_with(WorldOptions {
        state: false,
        ..WorldOptions::default()
    })
    .await
    .context("start the world (PostgreSQL and RabbitMQ must be running: ops/setup.sh)")?;
    let result = measure(&world, &cfg).await;
    world.stop().await;
    result
}

async fn measure(world: &World, cfg: &Config) -> Result<()> {
    eprintln!("seeding {} sites over {} clients…", cfg.sites, cfg.clients);
    let client_id = seed(world, cfg).await?;
    let mut conn = world.store.pool.acquire().await?;
    let (bound, _) = tokens::insert(
        &mut conn,
        NewToken {
            name: "bench-client1",
            scope: "sites:read",
            client_id: Some(client_id),
            expires_at: None,
            created_by: None,
        },
    )
    .await?;
    drop(conn);
    // Warm: plans cached, pages in shared buffers.
    for (t, p) in [(&world.token, "/api/v1/sites"), (&bound, "/api/v1/sites")] {
        timed(world, t, p, 3).await?;
    }
    let (admin_all, n_all) = timed(world, &world.token, "/api/v1/sites", cfg.requests).await?;
    let (admin_one, n_one) = timed(
        world,
        &world.token,
        "/api/v1/sites?client=client1",
        cfg.requests,
    )
    .await?;
    let (client, n_client) = timed(world, &bound, "/api/v1/sites", cfg.requests).await?;
    // A page of 100 from the middle of all 10,000: what a storefront's paged list costs.
    let middle = format!("/api/v1/sites?limit=100&offset={}", cfg.sites / 2);
    let (admin_page, n_page) = timed(world, &world.token, &middle, cfg.requests).await?;
    ensure!(
        n_one == n_client,
        "the client token saw {n_client} sites, ?client= {n_one}"
    );
    println!(
        "GET /api/v1/sites, {} sites over {} clients, {} requests each (ms p50 / p95 / p99 / max):",
        cfg.sites, cfg.clients, cfg.requests
    );
    println!("  admin token, all sites ({n_all}):            {admin_all}");
    println!("  admin token, ?client=client1 ({n_one}):       {admin_one}");
    println!("  client1's bound token ({n_client}):             {client}");
    println!("  admin token, a page ({middle}: {n_page}): {admin_page}");
    println!(
        "  cores {}, load {}",
        crate::machine::cores(),
        crate::machine::loadavg()
    );
    Ok(())
}
