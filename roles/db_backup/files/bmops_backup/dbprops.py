# SPDX-License-Identifier: Apache-2.0
"""What a dump does not carry: the live database's own properties (owner, connection
limit, ALTER DATABASE ... SET and ALTER ROLE ... IN DATABASE ... SET settings, the
database ACL), copied onto a scratch database so a swap keeps the database as it was;
and the free space of the PostgreSQL volume (PGDATA), checked before any copy of the
database is made there.
"""

from __future__ import annotations

import subprocess

from .command_wrappers import psql, run_in_db, sql_ident, sql_literal
from .config import find_container
from .exceptions import ToolError

PGDATA_DEFAULT = "/var/lib/postgresql/data"
# Settings whose value is a list (pg_dump quotes each element of these, GUC_LIST_QUOTE).
LIST_SETTINGS = {"search_path", "temp_tablespaces", "session_preload_libraries",
                 "local_preload_libraries", "shared_preload_libraries"}


def setting_value(name: str, value: str) -> str:
    if name.lower() not in LIST_SETTINGS:
        return sql_literal(value)
    items = [v.strip() for v in value.split(",") if v.strip()]
    return ", ".join(sql_literal(v[1:-1].replace('""', '"') if v.startswith('"') else v)
                     for v in items) or "''"


def read_props(cfg: dict, db: str) -> dict:
    """Owner, connection limit, settings and ACL of database ``db`` (sorted, comparable)."""
    lit = sql_literal(db)
    rows = psql(cfg, f"SELECT pg_get_userbyid(datdba), datconnlimit, coalesce(datacl::text, '')"
                     f" FROM pg_database WHERE datname = {lit};", db="postgres")
    if not rows:
        raise ToolError(f"database {db} does not exist")
    owner, connlimit, acl = rows[0]
    settings = psql(cfg, "SELECT coalesce(r.rolname, ''), unnest(s.setconfig) FROM "
                         "pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
                         "LEFT JOIN pg_roles r ON r.oid = s.setrole "
                         f"WHERE d.datname = {lit} ORDER BY 1, 2;", db="postgres")
    grants = psql(cfg, "SELECT coalesce(g.rolname, 'PUBLIC'), a.privilege_type, a.is_grantable "
                       "FROM pg_database d, aclexplode(d.datacl) a LEFT JOIN pg_roles g "
                       f"ON g.oid = a.grantee WHERE d.datname = {lit} ORDER BY 1, 2;",
                  db="postgres")
    return {"owner": owner, "connection_limit": int(connlimit),
            "settings": [list(r) for r in settings], "acl_default": acl == "",
            "grants": [[g, p, t == "t"] for g, p, t in grants]}


def create_sql(target: str, props: dict) -> str:
    return f"CREATE DATABASE {sql_ident(target)} OWNER {sql_ident(props['owner'])};"


def apply_sql(target: str, props: dict) -> str:
    """SQL that gives ``target`` the properties; run after the data is loaded (a setting
    such as default_transaction_read_only must not apply to the restore itself)."""
    db = sql_ident(target)
    out = [f"ALTER DATABASE {db} OWNER TO {sql_ident(props['owner'])};",
           f"ALTER DATABASE {db} CONNECTION LIMIT {int(props['connection_limit'])};"]
    for role, setting in props["settings"]:
        name, _, value = setting.partition("=")
        scope = f"ALTER ROLE {sql_ident(role)} IN DATABASE {db}" if role else \
            f"ALTER DATABASE {db}"
        out.append(f"{scope} SET {sql_ident(name)} = {setting_value(name, value)};")
    if not props["acl_default"]:
        out.append(f"REVOKE ALL ON DATABASE {db} FROM PUBLIC;")
        for grantee, priv, grantable in props["grants"]:
            who = "PUBLIC" if grantee == "PUBLIC" else sql_ident(grantee)
            opt = " WITH GRANT OPTION" if grantable else ""
            out.append(f"GRANT {priv} ON DATABASE {db} TO {who}{opt};")
    return "\n".join(out) + "\n"


def copy_props(cfg: dict, target: str, props: dict) -> None:
    psql(cfg, apply_sql(target, props), db="postgres")


def pgdata_volume(cfg: dict) -> str:
    """A name for the volume that holds PGDATA: the Docker volume if one is mounted."""
    cid = find_container(cfg)
    name = ""
    if cid:
        fmt = ("{{range .Mounts}}{{if eq .Destination \"" + PGDATA_DEFAULT + "\"}}"
               "{{if .Name}}{{.Name}}{{else}}{{.Source}}{{end}}{{end}}{{end}}")
        try:
            res = subprocess.run([cfg["docker"], "inspect", "-f", fmt, cid],
                                 capture_output=True, text=True, check=False)
            name = res.stdout.strip() if res.returncode == 0 else ""
        except OSError:
            name = ""
    return f"volume {name} (PGDATA)" if name else "the PGDATA volume"


def check_pgdata_space(cfg: dict, need: int, what: str) -> dict:
    """Fail unless the PostgreSQL volume has ``need`` bytes free."""
    out = run_in_db(cfg, ["sh", "-c", f'df -P -k "${{PGDATA:-{PGDATA_DEFAULT}}}"'])
    lines = [ln for ln in out.splitlines() if ln.strip()]
    try:
        free = int(lines[-1].split()[3]) * 1024
    except (IndexError, ValueError):
        raise ToolError(f"cannot read the free space of PGDATA in the db container: {out!r}") \
            from None
    if free < need:
        raise ToolError(f"not enough free space on {pgdata_volume(cfg)} for {what}: need "
                        f"{need} bytes (the database size), {free} bytes free; "
                        "nothing was changed")
    return {"free_bytes": free, "needed_bytes": int(need)}
