//! A code block's language: from its markup (a class or data attribute) or,
//! when the markup names none, a rule-based guess on the trimmed text, checked
//! on a table of real snippets (SQL and psql, shell and console sessions,
//! C, Python, JavaScript, Rust, Go, Java, data formats, plain output).

pub use crate::content::normalize_language;

/// The language named by a class list or data attribute: `language-x`,
/// `lang-x`, highlight.js's `hljs x`, or a bare known name.
pub fn language_from_class(class: &str) -> Option<String> {
    let mut bare = None;
    for c in class.split_whitespace() {
        if let Some(l) = c.strip_prefix("language-").or_else(|| c.strip_prefix("lang-")) {
            return Some(normalize_language(l));
        }
        if KNOWN.contains(&c.to_ascii_lowercase().as_str()) {
            bare = Some(normalize_language(c));
        }
    }
    bare
}

/// The language of a Sphinx `highlight-<lang>` wrapper class.
pub fn language_from_highlight(class: &str) -> Option<String> {
    let lang = class.split_whitespace().find_map(|c| c.strip_prefix("highlight-"))?;
    match lang {
        "default" | "" => None,
        "python3" | "py3" | "pycon" | "pycon3" => Some("python".into()),
        "none" | "text" | "output" => Some("text".into()),
        "shell" | "sh" | "bash" | "shell-session" | "console" | "sh-session" => Some("bash".into()),
        other => Some(normalize_language(other)),
    }
}

const KNOWN: &[&str] = &[
    "rust",
    "python",
    "py",
    "javascript",
    "js",
    "typescript",
    "ts",
    "tsx",
    "jsx",
    "go",
    "java",
    "kotlin",
    "c",
    "cpp",
    "csharp",
    "cs",
    "ruby",
    "php",
    "swift",
    "bash",
    "sh",
    "shell",
    "console",
    "json",
    "yaml",
    "yml",
    "toml",
    "sql",
    "html",
    "css",
    "xml",
    "dockerfile",
    "graphql",
    "scala",
    "elixir",
    "haskell",
    "lua",
    "r",
];

/// A guess from the code itself, for blocks without a declared language:
/// the language, or `text` for plain output (query results, plans, logs)
/// and anything not recognised. Reads the trimmed text; checked on a table
/// of real snippets below and on a manual's blocks (`trawl-bench docs`).
pub fn guess_language(code: &str) -> String {
    guess(code).lang.to_string()
}

/// A guess and whether the code itself settles it; an unsure guess is
/// `text`, and a page's other blocks may settle it (`label_fences`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Guess {
    pub lang: &'static str,
    pub sure: bool,
}

fn sure(lang: &'static str) -> Guess {
    Guess { lang, sure: true }
}

pub fn guess(code: &str) -> Guess {
    let code = code.trim_matches(|c: char| c == '\n' || c == '\r');
    let t = code.trim_start();
    if t.is_empty() {
        return sure("text");
    }
    if (t.starts_with('{') || t.starts_with('[')) && serde_json::from_str::<serde_json::Value>(t).is_ok() {
        return sure("json");
    }
    let lines: Vec<&str> = code.lines().map(str::trim_end).filter(|l| !l.trim().is_empty()).collect();
    let first = lines.first().map(|l| l.trim()).unwrap_or("");
    let statements = lines.iter().any(|l| psql_prompt(l).is_some())
        || (lines.iter().any(|l| statement_line(l).is_some()) && sql_first(&lines));
    if shell_prompt(first) {
        return sure("console");
    }
    if !statements && is_output(&lines) {
        return sure("text");
    }
    // Embedded SQL in C (ECPG) before SQL itself.
    if lines.iter().any(|l| l.trim_start().starts_with("EXEC SQL")) {
        return sure("c");
    }
    // PL/pgSQL assignments: `x := a || $$…$$;`.
    if statements || (has_plpgsql_assignment(&lines) && !code.contains("func ")) {
        return sure("sql");
    }
    if t.starts_with("<?xml") || (t.starts_with('<') && t.trim_end().ends_with('>')) {
        let lower = t.to_ascii_lowercase();
        let html = [
            "<!doctype html",
            "<html",
            "<div",
            "<p>",
            "<body",
            "<span",
            "<a href",
            "<head",
            "<script",
            "<table>",
            "<table ",
        ];
        return sure(if html.iter().any(|h| lower.contains(h)) { "html" } else { "xml" });
    }
    if shell_prompt(first) {
        return sure("console");
    }
    if is_diff(&lines) {
        return sure("diff");
    }
    if lines.iter().all(|l| c_variable(l)) {
        return sure("c");
    }
    let has = |s: &str| code.contains(s);
    let starts = |s: &str| lines.iter().any(|l| l.trim_start().starts_with(s));
    let count = |hits: &[bool]| hits.iter().filter(|h| **h).count();
    let scores: [(&'static str, usize); 9] = [
        (
            "c",
            count(&[
                has("#include"),
                has("int main("),
                has("NULL"),
                has("typedef struct"),
                has(" *") && has(";"),
                has("(*"),
                lines.iter().any(|l| c_variable(l)),
                starts("typedef "),
                has("PG_FUNCTION_ARGS"),
                has("Datum"),
                has("->"),
                has("/*"),
                has("void "),
                has("char *"),
                has("return ") && has(";"),
                starts("static "),
                has("struct "),
            ]),
        ),
        (
            "rust",
            count(&[
                has("fn "),
                has("let mut "),
                has("::"),
                has("impl "),
                has("pub fn"),
                has("-> "),
                has("println!"),
                has("use std"),
            ]),
        ),
        (
            "python",
            count(&[
                starts("def "),
                starts("import "),
                starts("from ") && has(" import "),
                has("self."),
                starts("elif "),
                has("print("),
                has("):\n"),
                starts("class ") && has(":\n"),
                has("None"),
            ]),
        ),
        (
            "javascript",
            count(&[
                starts("const "),
                has("function "),
                has("=> "),
                has("console.log"),
                has("require("),
                starts("let "),
                has("document."),
                starts("export "),
                has("==="),
            ]),
        ),
        ("go", count(&[has("func "), starts("package "), has(":= "), has("fmt."), has("chan "), has("err != nil")])),
        (
            "java",
            count(&[
                has("public class"),
                has("public static void"),
                has("System.out"),
                starts("import java"),
                has("private "),
                has("new ") && has(";"),
            ]),
        ),
        ("perl", count(&[has("my $"), has("my @"), has("$_["), has("sub "), starts("use strict")])),
        ("tcl", count(&[has("proc "), has("set "), has("$1"), has("return_null"), has("elog ")]).saturating_sub(1)),
        (
            "bash",
            count(&[
                command_line(first),
                has("sudo "),
                has("apt-get "),
                has(" | "),
                has("export "),
                t.starts_with("#!"),
                lines.iter().all(|l| {
                    command_line(l.trim()) || l.trim_start().starts_with('#') || l.ends_with('\\') || l.starts_with(' ')
                }),
            ]),
        ),
    ];
    if let Some((lang, n)) = scores.iter().max_by_key(|(_, n)| *n)
        && *n >= 2
    {
        return sure(lang);
    }
    if command_line(first) && lines.len() <= 3 {
        return sure("bash");
    }
    if lines.iter().all(|l| {
        c_declaration(l.trim())
            || l.starts_with(' ')
            || l.trim_start().starts_with('{')
            || l.trim_start().starts_with('}')
    }) && c_declaration(first)
    {
        return sure("c");
    }
    // A prototype over a few lines (`void\nambuildempty (Relation r);`).
    if lines.len() <= 8 && c_declaration(&lines.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ")) {
        return sure("c");
    }
    if sql_synopsis(&lines) {
        return sure("sql");
    }
    if is_config(&lines) {
        // `NAME=value` lines with no spaces are a shell's environment.
        let env = lines.iter().filter(|l| !l.trim_start().starts_with('#')).all(|l| {
            l.split_once('=').is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            })
        });
        return sure(if env { "bash" } else { "ini" });
    }
    let nested = lines.iter().any(|l| l.starts_with(' ') || l.trim_start().starts_with("- "));
    if lines.len() >= 2 && nested && lines.iter().all(|l| yaml_line(l)) {
        return sure("yaml");
    }
    if lines.len() == 1 && options(first) {
        return sure("bash");
    }
    if lines.len() == 1 && first.starts_with('$') && first.contains(" = ") && first.ends_with(';') {
        return sure("perl");
    }
    // `rv = plpy.execute(plan, [1])`: an assignment from a call, no `;`.
    if lines.len() == 1 && python_assignment(first) {
        return sure("python");
    }
    Guess { lang: "text", sure: false }
}

/// A unified diff: `@@` hunks or `+`/`-` lines with a space or tab after.
fn is_diff(lines: &[&str]) -> bool {
    let marked = lines.iter().filter(|l| {
        l.starts_with("@@")
            || l.starts_with("+ ")
            || l.starts_with("- ")
            || l.starts_with("+\t")
            || l.starts_with("-\t")
            || l.starts_with("+++")
            || l.starts_with("---")
    });
    let plus = lines.iter().any(|l| l.starts_with('+'));
    plus && marked.count() * 2 >= lines.len() && lines.iter().all(|l| l.starts_with(['+', '-', ' ', '@']))
}

/// `int x = 4;`, `char foo[16], bar[16];`: a C type, names, a `;`.
fn c_variable(line: &str) -> bool {
    const TYPES: &[&str] = &[
        "int", "char", "long", "short", "double", "float", "unsigned", "signed", "bool", "size_t", "int32", "int64",
        "uint32", "uint64", "int16", "uint8", "Oid", "Datum",
    ];
    let l = line.trim();
    l.ends_with(';')
        && l.split_whitespace().next().is_some_and(|w| TYPES.contains(&w))
        && !l.contains(" = '")
        && statement_line(l).is_none()
}

fn has_plpgsql_assignment(lines: &[&str]) -> bool {
    lines.iter().any(|l| l.contains(" := "))
        && lines.iter().any(|l| l.contains("||") || l.contains("$$") || l.trim_end().ends_with(';'))
}

fn python_assignment(line: &str) -> bool {
    line.split_once(" = ").is_some_and(|(name, value)| {
        name.chars().all(|c| c.is_alphanumeric() || c == '_')
            && value.split_once('(').is_some_and(|(callee, _)| {
                callee.contains('.') && callee.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '.')
            })
            && !line.ends_with(';')
    })
}

/// A command line: a lower-case program name and `--long` or `-x` options.
fn options(line: &str) -> bool {
    let mut words = line.split_whitespace();
    let program = words.next().unwrap_or("");
    program.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.' | '/'))
        && words.any(|w| {
            (w.starts_with("--") && w.len() > 2 && w[2..].starts_with(|c: char| c.is_ascii_lowercase()))
                || (w.len() == 2 && w.starts_with('-') && w[1..].starts_with(|c: char| c.is_ascii_alphabetic()))
        })
}

/// A bare call or signature (`substring(string, pattern)`, `f(x) returns y`):
/// a synopsis whose language is the page's.
pub fn synopsis(code: &str) -> bool {
    let line = code.trim();
    if line.lines().count() > 3 {
        return false;
    }
    let line: String = line.split_whitespace().collect::<Vec<_>>().join(" ");
    let Some((name, rest)) = line.split_once('(') else { return false };
    let name = name.trim_end();
    !name.is_empty()
        && name.split(' ').count() <= 3
        && name.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | ' ' | '*' | ':'))
        && rest.contains(')')
}

/// A C declaration or prototype: a type, a name, `(`, and a `;`, `)`, `{`
/// or `,` at the end (`int PQstatus(const PGconn *conn);`).
fn c_declaration(line: &str) -> bool {
    let Some((head, _)) = line.split_once('(') else { return false };
    let words: Vec<&str> = head.split(|c: char| c.is_whitespace() || c == '*').filter(|w| !w.is_empty()).collect();
    let ident = |w: &str| {
        w.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
            && w.chars().all(|c| c.is_alphanumeric() || c == '_')
    };
    words.len() >= 2
        && words.iter().all(|w| ident(w))
        && statement_line(line).is_none()
        && !words.iter().any(|w| {
            w.len() > 1
                && w.chars().all(|c| c.is_ascii_uppercase())
                && (SQL_WORDS.contains(w) || ["ANY", "SOME", "ALL"].contains(w))
        })
        && !words[0].chars().all(|c| c.is_ascii_uppercase() || c == '_')
        && [';', ')', '{', ','].iter().any(|e| line.trim_end().ends_with(*e))
}

/// SQL's upper-case words that a synopsis or a fragment has.
const SQL_WORDS: &[&str] = &[
    "FROM",
    "WHERE",
    "IS",
    "NOT",
    "NULL",
    "AND",
    "OR",
    "AS",
    "IN",
    "BETWEEN",
    "DISTINCT",
    "LIKE",
    "SIMILAR",
    "TO",
    "ON",
    "USING",
    "RETURNS",
    "LANGUAGE",
    "TABLE",
    "INDEX",
    "EXISTS",
    "ANY",
    "ALL",
    "SOME",
    "ESCAPE",
    "TRUE",
    "FALSE",
    "UNKNOWN",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "OVER",
    "PARTITION",
    "BY",
    "ORDER",
    "ASC",
    "DESC",
    "COLLATE",
    "CAST",
    "INTERVAL",
    "TIMESTAMP",
    "ZONE",
    "AT",
    "FOR",
    "OF",
    "SET",
    "DEFAULT",
    "ROW",
    "ROWS",
    "RANGE",
    "WITH",
    "UNBOUNDED",
    "PRECEDING",
    "FOLLOWING",
    "CURRENT",
    "EXCLUDE",
    "GROUPS",
    "TIES",
    "OTHERS",
    "NO",
];

/// A synopsis or fragment of SQL: upper-case SQL words beside lower-case
/// names (`a IS NOT DISTINCT FROM b`), or a signature with `returns`.
fn sql_synopsis(lines: &[&str]) -> bool {
    let words: Vec<&str> = lines
        .iter()
        .flat_map(|l| l.split(|c: char| !(c.is_alphanumeric() || c == '_')))
        .filter(|w| !w.is_empty())
        .collect();
    let upper = words.iter().filter(|w| SQL_WORDS.contains(w)).count();
    let signature = lines.iter().any(|l| l.contains(") returns ") || l.contains(") RETURNS ") || l.contains(") → "));
    // `GET DESCRIPTOR name …`: a statement's keywords, however unknown.
    let keywords = lines.first().is_some_and(|l| {
        let mut w = l.split_whitespace();
        let upper = |w: Option<&str>| w.is_some_and(|w| w.len() >= 2 && w.chars().all(|c| c.is_ascii_uppercase()));
        upper(w.next()) && upper(w.next())
    });
    if keywords {
        return true;
    }
    signature || upper >= 2 && upper * 5 >= words.len()
}

/// SQL's statements, as a line starts them (after a psql prompt).
const SQL_STATEMENTS: &[&str] = &[
    "SELECT",
    "INSERT INTO",
    "UPDATE",
    "DELETE FROM",
    "CREATE",
    "ALTER",
    "DROP",
    "GRANT",
    "REVOKE",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "WITH",
    "EXPLAIN",
    "SET",
    "SHOW",
    "VACUUM",
    "ANALYZE",
    "COPY",
    "TRUNCATE",
    "DECLARE",
    "FETCH",
    "PREPARE",
    "EXECUTE",
    "LISTEN",
    "NOTIFY",
    "LOCK",
    "REINDEX",
    "CLUSTER",
    "COMMENT ON",
    "SAVEPOINT",
    "RELEASE",
    "START TRANSACTION",
    "VALUES",
    "TABLE",
    "CALL",
    "DO",
    "IMPORT FOREIGN",
    "SECURITY LABEL",
    "REFRESH MATERIALIZED",
    "MERGE INTO",
    "DISCARD",
    "LOAD",
    "CHECKPOINT",
    "ABORT",
    "END",
    "DEALLOCATE",
    "RESET",
    "UNLISTEN",
    "REASSIGN",
    "MOVE",
    "CLOSE",
    "RETURN",
    "RAISE",
    "PERFORM",
    "IF",
    "LOOP",
    "FOR",
    "ELSE",
    "ELSIF",
    "EXCEPTION",
    "ORDER BY",
    "FROM",
    "WHERE",
    "GROUP BY",
    "LIMIT",
    "UNION",
    "JOIN",
];

/// The statement a line starts with, upper case as SQL is written in
/// documentation (a lower-case `set` or `do` is as likely a shell's).
fn statement_line(line: &str) -> Option<&'static str> {
    let l = psql_prompt(line).unwrap_or(line).trim_start();
    let follows = |rest: &str| rest.chars().next().is_none_or(|c| c == ' ' || c == ';' || c == '(' || c == '\t');
    SQL_STATEMENTS.iter().copied().find(|s| l.starts_with(s) && follows(&l[s.len()..])).or_else(|| {
        // Lower case only for statements no shell or language starts a line with.
        LOWER_CASE_STATEMENTS.iter().copied().find(|s| {
            l.len() > s.len()
                && l.is_char_boundary(s.len())
                && l[..s.len()].eq_ignore_ascii_case(s)
                && l[..s.len()] == s.to_ascii_lowercase()
                && follows(&l[s.len()..])
        })
    })
}

/// Statements recognised in lower case too (`select 1;`).
const LOWER_CASE_STATEMENTS: &[&str] = &[
    "SELECT",
    "INSERT INTO",
    "DELETE FROM",
    "CREATE TABLE",
    "CREATE INDEX",
    "CREATE FUNCTION",
    "CREATE VIEW",
    "ALTER TABLE",
    "DROP TABLE",
    "EXPLAIN",
    "VACUUM",
    "TRUNCATE",
];

/// The first line that is code (not a comment) starts a statement, or most
/// lines do.
fn sql_first(lines: &[&str]) -> bool {
    let code: Vec<&&str> = lines.iter().filter(|l| !l.trim_start().starts_with("--")).collect();
    let first = code.first().is_some_and(|l| statement_line(l).is_some());
    let most =
        code.iter().filter(|l| statement_line(l).is_some() || l.trim_end().ends_with(';')).count() * 2 >= code.len();
    first || most
}

/// A psql prompt (`=>`, `=#`, `db=>`, `db=#`, `db->` continuation): the rest of the line.
fn psql_prompt(line: &str) -> Option<&str> {
    let l = line.trim_start();
    // The prompt's prefix: a database name, maybe `user@host ` before it.
    let name = |p: &str| p.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '@' | '.' | '-'));
    ["=>", "=#", "->", "-#"].iter().find_map(|p| {
        let at = l.find(p)?;
        let (prefix, rest) = (&l[..at], &l[at + p.len()..]);
        let ok_prefix = match prefix.split_once(' ') {
            Some((host, db)) => host.contains('@') && name(host) && !db.is_empty() && name(db),
            None => name(prefix) && (!prefix.is_empty() || p.starts_with('=')),
        };
        (ok_prefix && (rest.is_empty() || rest.starts_with(' '))).then_some(rest)
    })
}

/// A shell prompt followed by a command.
fn shell_prompt(line: &str) -> bool {
    if ["$ ", "% ", "# ", "> "]
        .iter()
        .any(|p| line.strip_prefix(p).is_some_and(|r| command_line(r) || r.starts_with("./")))
    {
        return true;
    }
    // `user@host:~/dir$ cmd`, `doc/src$ make`: a prompt naming where it is.
    line.split_once("$ ").is_some_and(|(prefix, rest)| {
        !prefix.is_empty()
            && !prefix.contains(' ')
            && prefix.contains(['@', '/', '~', ':'])
            && rest
                .split_whitespace()
                .next()
                .is_some_and(|w| w.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')))
    })
}

/// Commands that start a shell line in documentation.
const COMMANDS: &[&str] = &[
    "sudo",
    "apt",
    "apt-get",
    "yum",
    "dnf",
    "brew",
    "pip",
    "pip3",
    "python",
    "python3",
    "npm",
    "npx",
    "yarn",
    "pnpm",
    "cargo",
    "rustup",
    "go",
    "git",
    "curl",
    "wget",
    "docker",
    "kubectl",
    "make",
    "gmake",
    "cmake",
    "cd",
    "ls",
    "cp",
    "mv",
    "rm",
    "mkdir",
    "chmod",
    "chown",
    "ln",
    "cat",
    "echo",
    "export",
    "tar",
    "gunzip",
    "gzip",
    "unzip",
    "kill",
    "su",
    "env",
    "ssh",
    "scp",
    "rsync",
    "systemctl",
    "service",
    "initdb",
    "pg_ctl",
    "pg_ctlcluster",
    "psql",
    "createdb",
    "dropdb",
    "createuser",
    "dropuser",
    "clusterdb",
    "reindexdb",
    "vacuumdb",
    "ecpg",
    "postgres",
    "postmaster",
    "pgbench",
    "oid2name",
    "vacuumlo",
    "ldconfig",
    "configure",
    "./configure",
    "meson",
    "ninja",
    "LANG=C",
    "PGDATA=",
    "nohup",
    "ulimit",
    "sysctl",
    "tail",
    "grep",
    "find",
    "sed",
    "awk",
    "perl",
    "openssl",
    "pkg",
    "port",
    "emerge",
    "zypper",
    "pacman",
    "xcrun",
    "gcc",
    "cc",
    "clang",
    "ld",
    "install",
    "ldd",
    "which",
    "man",
    "more",
    "less",
    "head",
    "sort",
    "uniq",
    "wc",
    "cut",
    "xargs",
    "diff",
    "patch",
    "touch",
    "date",
    "id",
    "mount",
    "df",
    "du",
    "ps",
    "top",
    "chkconfig",
    "update-rc.d",
    "launchctl",
    "bison",
    "flex",
    "xsltproc",
    "valgrind",
    "gdb",
    "strace",
    "lcov",
    "genhtml",
    "bzip2",
    "xz",
    "zstd",
    "lz4",
    "gpg",
    "useradd",
    "adduser",
    "groupadd",
    "passwd",
];

fn command_line(line: &str) -> bool {
    let word = line.split_whitespace().next().unwrap_or("");
    // `MANPATH=/usr/local/man:$MANPATH`: setting a variable.
    if word.split_once('=').is_some_and(|(k, _)| {
        !k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    }) {
        return true;
    }
    // `/usr/local/pgsql/bin/initdb` runs `initdb`.
    let word = if word.starts_with('/') { word.rsplit('/').next().unwrap_or(word) } else { word };
    COMMANDS.iter().any(|c| word == *c || (c.ends_with('=') && word.starts_with(c)))
        || (word.starts_with("pg_") && word.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
}

/// Output, not code: a query's result table, a plan, a log.
fn is_output(lines: &[&str]) -> bool {
    let ruled = lines.iter().any(|l| {
        let l = l.trim();
        l.len() >= 3 && l.starts_with('-') && l.chars().all(|c| c == '-' || c == '+')
    });
    let rows = lines.iter().any(|l| {
        let l = l.trim();
        l.starts_with('(') && (l.ends_with(" rows)") || l.ends_with(" row)"))
    });
    let plan = lines
        .iter()
        .filter(|l| l.contains("(cost=") || l.contains("(actual time=") || l.trim_start().starts_with("->  "))
        .count();
    let log = lines
        .iter()
        .filter(|l| {
            let l = l.trim_start();
            [
                "ERROR:",
                "WARNING:",
                "NOTICE:",
                "LOG:",
                "DETAIL:",
                "HINT:",
                "INFO:",
                "DEBUG:",
                "FATAL:",
                "CONTEXT:",
                "STATEMENT:",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .count();
    ruled || rows || plan * 2 >= lines.len().max(1) || (log * 2 >= lines.len().max(1) && log > 0)
}

/// A configuration file: `name = value` lines and `#` comments.
fn is_config(lines: &[&str]) -> bool {
    let setting = |l: &&str| {
        let l = l.trim();
        l.starts_with('#')
            || l.starts_with('[') && l.ends_with(']')
            || l.split_once(" = ").or_else(|| l.split_once('=')).is_some_and(|(k, v)| {
                // A value indexes or calls nothing outside quotes (`x = rv[i]` is code).
                let unquoted: String = v.split(['\'', '"']).step_by(2).collect();
                !k.trim().is_empty()
                    && k.trim().chars().all(|c| c.is_alphanumeric() || c == '_' || c == '.' || c == '-')
                    && !unquoted.contains(['[', '(', '{'])
            })
    };
    !lines.is_empty()
        && lines.iter().filter(|l| setting(l)).count() == lines.len()
        && lines.iter().any(|l| !l.trim().starts_with('#'))
}

fn yaml_line(line: &str) -> bool {
    let l = line.trim_start();
    l.starts_with("- ")
        || l.starts_with('#')
        || l.split_once(": ").or_else(|| l.strip_suffix(':').map(|k| (k, ""))).is_some_and(|(k, _)| {
            !k.is_empty() && k.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == '.')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_from_prism_hljs_and_bare_classes() {
        assert_eq!(language_from_class("language-rust").as_deref(), Some("rust"));
        assert_eq!(language_from_class("hljs language-py").as_deref(), Some("python"));
        assert_eq!(language_from_class("hljs bash").as_deref(), Some("bash"));
        assert_eq!(language_from_class("shiki github-dark"), None);
    }

    #[test]
    fn guesses_languages_from_the_code() {
        assert_eq!(guess_language("fn main() {\n    let mut x = 1;\n}\nimpl Foo {}"), "rust");
        assert_eq!(guess_language("def f(self):\n    import os\n    print(os)"), "python");
        assert_eq!(guess_language("{\"a\": [1, 2]}"), "json");
        assert_eq!(guess_language("SELECT id FROM pages WHERE x = 1"), "sql");
        assert_eq!(guess_language("\n\nCREATE TABLE t (id int);"), "sql", "a leading blank line");
        assert_eq!(guess_language("ALTER TABLE t ADD COLUMN x int;"), "sql");
        assert_eq!(guess_language("UPDATE t SET x = 1 WHERE id = 2;"), "sql");
        assert_ne!(guess_language("with open(path) as f:\n    data = f.read()\n    print(data)"), "sql");
        assert_eq!(guess_language("const f = () => console.log(1);"), "javascript");
    }

    /// Blocks as manuals and READMEs print them, each with the label a
    /// reader would give it.
    const SNIPPETS: &[(&str, &str)] = &[
        ("sql", "\nCREATE TABLE weather (\n    city    varchar(80),\n    temp_lo int\n);\n"),
        ("sql", "SELECT city, max(temp_lo)\n    FROM weather\n    GROUP BY city;"),
        ("sql", "INSERT INTO weather VALUES ('San Francisco', 46, 50, 0.25, '1994-11-27');"),
        ("sql", "GRANT SELECT ON mytable TO PUBLIC;"),
        ("sql", "BEGIN;\nUPDATE accounts SET balance = balance - 100.00\n    WHERE name = 'Alice';\nCOMMIT;"),
        (
            "sql",
            "CREATE FUNCTION add(integer, integer) RETURNS integer\n    AS 'select $1 + $2;'\n    LANGUAGE SQL\n    IMMUTABLE;",
        ),
        ("sql", "-- a comment first\nVACUUM (VERBOSE, ANALYZE) onek;"),
        ("sql", "=> SELECT 2 + 2;\n ?column?\n----------\n        4\n(1 row)"),
        ("sql", "mydb=# \\dt\n"),
        ("sql", "CREATE TABLE [ IF NOT EXISTS ] table_name ( [\n  column_name data_type [ COLLATE collation ]\n] )"),
        ("text", " city  | temp_lo\n-------+---------\n Hayward |      37\n(1 row)"),
        (
            "text",
            "                        QUERY PLAN\n-------------------------------------------------------------\n Seq Scan on tenk1  (cost=0.00..458.00 rows=10000 width=244)",
        ),
        ("text", "ERROR:  relation \"foo\" does not exist\nLINE 1: SELECT * FROM foo;"),
        (
            "c",
            "#include \"postgres.h\"\n\nPG_MODULE_MAGIC;\n\nDatum\nadd_one(PG_FUNCTION_ARGS)\n{\n    int32 arg = PG_GETARG_INT32(0);\n    PG_RETURN_INT32(arg + 1);\n}",
        ),
        ("c", "typedef struct\n{\n    int   x, y;\n} Point;\n\nstatic void\nfree_point(Point *p)\n{\n    pfree(p);\n}"),
        (
            "console",
            "$ initdb -D /usr/local/pgsql/data\nThe files belonging to this database system will be owned by user \"postgres\".",
        ),
        ("bash", "./configure --prefix=/usr/local/pgsql\nmake\nsudo make install"),
        ("bash", "pg_dump [connection-option...] [option...] [dbname]"),
        ("bash", "tar xf postgresql-15.tar.gz\ncd postgresql-15"),
        (
            "python",
            "def fetch(url):\n    import urllib.request\n    with urllib.request.urlopen(url) as r:\n        return r.read()",
        ),
        ("python", "from pathlib import Path\n\nfor p in Path('.').glob('*.py'):\n    print(p)"),
        ("javascript", "const socket = io();\nsocket.on('crawl:progress', (p) => console.log(p.percent));"),
        (
            "rust",
            "use std::collections::HashMap;\n\nfn main() {\n    let mut m = HashMap::new();\n    m.insert(1, 2);\n}",
        ),
        ("go", "package main\n\nimport \"fmt\"\n\nfunc main() {\n    x := 1\n    fmt.Println(x)\n}"),
        (
            "java",
            "public class Hello {\n    public static void main(String[] args) {\n        System.out.println(\"hi\");\n    }\n}",
        ),
        ("json", "\n{\"name\": \"trawl\", \"pages\": [1, 2, 3]}\n"),
        ("yaml", "services:\n  db:\n    image: postgres:15\n    ports:\n      - \"5432:5432\""),
        ("ini", "# memory\nshared_buffers = 128MB\nwork_mem = 4MB"),
        ("xml", "<?xml version=\"1.0\"?>\n<config><entry key=\"a\">1</entry></config>"),
        ("html", "<div class=\"note\">\n  <p>Read <a href=\"/docs\">the docs</a>.</p>\n</div>"),
        ("c", "int PQresultSetInstanceData(PGresult *res, PGEventProc proc, void *data);"),
        ("c", "const char *PQsslAttribute(const PGconn *conn, const char *attribute_name);"),
        ("c", "void SPI_freetuple(HeapTuple row)"),
        ("c", "EXEC SQL CREATE TABLE foo (number integer, ascii char(16));\nEXEC SQL COMMIT;"),
        ("sql", "row_constructor IS NOT DISTINCT FROM row_constructor"),
        ("sql", "metaphone(text source, int max_output_length) returns text"),
        (
            "sql",
            "CREATE FUNCTION reffunc2() RETURNS refcursor AS '\nDECLARE\n    ref refcursor;\nBEGIN\n    OPEN ref FOR SELECT col FROM test;\n    RETURN ref;\nEND;\n' LANGUAGE plpgsql;\n\nSELECT reffunc2();\n\n      reffunc2\n--------------------\n <unnamed cursor 1>\n(1 row)",
        ),
        ("bash", "/usr/local/pgsql/bin/initdb -D /usr/local/pgsql/data"),
        (
            "sql",
            "peter@localhost testdb=> \\pset border 2\nBorder style is 2.\npeter@localhost testdb=> SELECT * FROM my_table;",
        ),
        ("console", "doc/src/sgml$ make check"),
        ("c", "void\nambuildempty (Relation indexRelation);"),
        ("bash", "gpg --gen-key"),
        (
            "diff",
            "+    /* see PROKIND_ categories below */\n+    char        prokind BKI_DEFAULT(f);\n     char        provolatile;",
        ),
        (
            "text",
            "IpcMemoryCreate: shmget(key=%d, size=%u, 0%o) failed: %m\n(plus a long addendum that is basically a hint)",
        ),
        ("text", "==== sqlca ====\nsqlcode: -400\nsqlerrm.sqlerrml: 49"),
        ("text", "/etc/selinux/targeted/contexts/sepgsql_contexts:  line 33 has invalid object type db_blobs"),
        ("c", "((fcinfo)->context != NULL && IsA((fcinfo)->context, EventTriggerData))"),
        ("python", "rv = plpy.execute(plan, [\"name\"], 5)"),
        ("sql", "select 1\\; select 2\\; select 3;"),
        ("bash", "# FOP binary distribution\nFOP_OPTS='-Xmx1500m'\n# Debian\nJAVA_OPTS='-Xmx1500m'"),
        ("c", "int   x = 4;\nchar  foo[16], bar[16];"),
        ("sql", "expression operator ANY (array expression)\nexpression operator SOME (array expression)"),
        ("c", "typedef struct\n{\n    const PGresult *src;\n    PGresult   *dest;\n} PGEventResultCopy;"),
        (
            "console",
            "$ psql -l\n                 List of databases\n   Name    |  Owner   | Encoding\n-----------+----------+----------\n clocaledb | hlinnaka | SQL_ASCII\n(1 row)",
        ),
        ("perl", "$rv = spi_exec_query('SELECT * FROM my_table', 5);"),
        (
            "c",
            "Plan *(*PlanCustomPath) (PlannerInfo *root,\n                          RelOptInfo *rel,\n                          List *custom_plans);",
        ),
        (
            "c",
            "int\nAcquireSampleRowsFunc(Relation relation,\n                      int elevel,\n                      HeapTuple *rows,\n                      int targrows,\n                      double *totalrows);",
        ),
        ("xml", "<tablename>\n  <row>\n    <columnname1>data</columnname1>\n  </row>\n</tablename>"),
        ("bash", "MANPATH=/usr/local/pgsql/share/man:$MANPATH\nexport MANPATH"),
        ("sql", "UNBOUNDED PRECEDING\noffset PRECEDING\nCURRENT ROW"),
        ("bash", "pkg install docbook-xml docbook-xsl libxslt fop"),
        ("bash", "more -x4\nless -x4"),
        (
            "sql",
            "a_output := a_output || $$ if v_$$ || referrer_keys.kind || $$ like '$$\n    || referrer_keys.key_string || $$'' then return $$;",
        ),
        ("sql", "GET DESCRIPTOR descriptor_name :cvariable = descriptor_header_item [, ... ]"),
    ];

    #[test]
    fn guesses_real_snippets() {
        let wrong: Vec<String> = SNIPPETS
            .iter()
            .filter(|(want, code)| guess_language(code) != *want)
            .map(|(want, code)| format!("{want} guessed as {}: {code:?}", guess_language(code)))
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}
