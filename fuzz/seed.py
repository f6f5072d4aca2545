#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into fuzz/corpus/<target>/ (seed-*.txt):
real files from tests/fixtures/platforms and hand-written names, zone files, task
arguments and versions. Run from the repository root; safe to run again."""
import hashlib
import os
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests/fixtures/platforms"
CORPUS = ROOT / "fuzz/corpus"


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / ("seed-" + hashlib.sha1(data).hexdigest()[:16])).write_bytes(data)


def fixture_files(platform):
    base = FIX / platform
    for p in sorted(base.rglob("*")):
        if p.is_file() and "vendor" not in p.parts:
            yield str(p.relative_to(base)), p.read_text(errors="replace")


# names: one name per line, each line tried as every kind of name.
for s in [
    "web.example.com\nserver_webexamplecom",
    "a-1.b2\nserver_master",
    "server.example.com\n@server_serverexamplecom",
    "db.example.com\nserver_other",
    "@platform_d7\nplatform_drupal-10_3",
    "/var/aegir/platforms/drupal-7.98\n/srv/www/d10+x@y",
    "Web.example.com\na..b\n.a\na.\n-a.com\na_b.com\n../etc",
    "/\n/a/../b\n/a//b\n/a/\nvar/x\n/a/./b",
    "x" * 63 + ".com\n" + "a" * 64 + ".com",
    ".".join(["abcdefghij"] * 23) + "\nserver_" + "a" * 57,
    "a" * 60 + ".example.com",
    "platform_\nserver_\nserver_A\nplatform_a.b",
]:
    put("names", s)

# Drupal 7 .info and Drupal 8+ .info.yml files.
for platform in ["drupal7", "drupal10"]:
    for path, text in fixture_files(platform):
        if path.endswith(".info"):
            put("info_d7", text)
        elif path.endswith(".info.yml"):
            put("info_yml", text)
put("info_d7", "\ufeff; $Id$\r\nname = Views\r\ndescription = \"Multi\nline \\\"q\\\"\"\r\ndependencies[] = ctools (>=1.0)\r\nhidden = FALSE\r\n")
put("info_yml", "name: 'It''s: fine' # c\nversion: 1.0#x\ndescription: >\n  folded\n  text\ndependencies:\n- drupal:a (>=1)\n- b\ninstall: [node, 'drupal:user']\n")

# PHP: first line the module (or a path, for the path helpers), the rest the file.
for platform in ["drupal7", "drupal10"]:
    for path, text in fixture_files(platform):
        name = os.path.basename(path)
        if name.endswith(".install"):
            put("php", name[: -len(".install")] + "\n" + text)
        elif name in ("bootstrap.inc", "Drupal.php"):
            put("php", path + "\n" + text)
put("php", "views\n<?php\n/* function views_update_9() */\n$s = <<<EOT\nfunction views_update_8004() {}\nEOT;\nfunction &views_update_7302 () {}\n")
put("php", "profiles/standard/translations/drupal-7.98.pt-br.po\n<?php define( \"VERSION\" , \"7.99-dev\" ); const string VERSION = '11.1.0';")

# scan: path\0contents\0… for whole fixture platforms and small ones.
for platform in ["drupal7", "drupal10"]:
    parts = []
    for path, text in fixture_files(platform):
        if path.endswith((".info", ".info.yml", ".install", ".po")) or path in (
            "includes/bootstrap.inc",
            "core/lib/Drupal.php",
        ):
            parts += [path, "" if path.endswith(".po") else text]
    put("scan", "\0".join(parts))
put("scan", "\0".join([
    "includes/bootstrap.inc", "define('VERSION', '7.98');",
    "sites/all/modules/views/views.info", "name = Views\nversion = \"7.x-3.29\"\n",
    "sites/all/modules/views/views.install", "<?php function views_update_7301() {}",
    "profiles/standard/modules/views/views.info", "name = Views\n",
    "profiles/standard/standard.info", "name = Standard\nold_short_name = default\n",
    "profiles/standard/translations/de.po", "",
]))
put("scan", "\0".join([
    "./core/lib/Drupal.php", "<?php class Drupal { const VERSION = '10.3.1'; }",
    "modules/contrib/token/token.info.yml", "name: Token\ntype: module\nversion: '8.x-1.14'\n",
    "core/modules/token/token.info.yml", "name: Core token\ntype: module\n",
    "profiles/p/p.info.yml", "type: profile\nold_short_name: old\n",
    "modules/x/notype.info.yml", "name: No type\n",
]))

# zone_parse: first line the origin, the rest the file.
ZONE = """; zone example.com: written by berth, which rewrites the whole file on each change
$ORIGIN example.com.
$TTL 300
example.com. IN SOA ns1.host.net. hostmaster.example.com. 2026112200 3600 600 1209600 300
example.com. IN NS ns1.host.net.
www.example.com. IN A 192.0.2.10
example.com. IN A 192.0.2.10
shop.example.com. IN CNAME www.example.com.
v6.example.com. 60 IN AAAA 2001:db8::1
example.com. IN MX 10 mail.example.com.
_dmarc.example.com. IN TXT "v=DMARC1; p=none"
"""
put("zone_parse", "example.com\n" + ZONE)
put("zone_parse", """example.com.
$TTL 3600
@   IN  SOA ns1 hostmaster (
        2024010101 ; serial
        7200 900 604800 60 )
    IN  NS  ns1
ns1     IN A 192.0.2.1
www 600 IN A 192.0.2.2
        IN AAAA 2001:DB8::2
shop IN 60 CNAME www
EXAMPLE.com. MX 10 mail.other.net. ; comment
sub NS ns.other.net.
*.wild IN TXT "a(b" "c\\"d"
""")
put("zone_parse", "example.co.uk\n$ORIGIN example.co.uk.\n@ IN SOA ns. h. 1 2 3 4 5\n@ IN NS ns.\nwww IN CNAME @\n")

# zone_model: bytes read as choices; a few fixed random ones.
rnd = random.Random(7)
for n in [16, 64, 200, 600]:
    put("zone_model", bytes(rnd.randrange(256) for _ in range(n)))

# tasks: the arguments as JSON, validated for every type.
for s in [
    "{}",
    "null",
    "[]",
    '"migrate"',
    '{"uri": "new.example.com"}',
    '{"platform": "platform_d10", "db_server": "server_master"}',
    '{"uri": "copy.example.com", "platform": "platform_d7", "aliases": ["a.example.com"], "redirection": true}',
    '{"description": "Before the upgrade", "compression": "gzip"}',
    '{"description": null, "compression": "zstd"}',
    '{"backup": "0191f5d2-7c1e-7a3b-9c4d-2e5f6a7b8c9d"}',
    '{"service": "db", "fail": {"times": 2, "kind": "transient"}, "sleep_ms": 10, "steps": 3, "fail_step": 2}',
    '{"steps": 20, "fail_step": 20, "service": "backup"}',
    '{"unknown": 1}',
]:
    put("tasks", s)

# versions: three versions, one a line.
for s in [
    "7.x-3.x-dev\n7.x-3.0-unstable1\n7.x-3.0-alpha2",
    "7.x-3.0-beta1\n7.x-3.0-rc1\n7.x-3.29",
    "10.3.1\n10.3.0\n10.3.0-rc1",
    "8.x-1.14\n1.14.0\n1.14",
    "9.5.11\n10.0.0\n11.x-dev",
    "\n..\n1..2",
    "3.0-BETA2\n 3.0-beta2\t\n3.x",
    "99999999999999999999\n0\n-",
]:
    put("versions", s)
