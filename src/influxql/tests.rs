//! Tests of the InfluxQL module: lexing, every statement form, queries sent by Grafana, the
//! `influx` CLI and the Python client, InfluxDB's error texts, time-range extraction, column
//! naming, printing (print → parse gives the same tree), and robustness against hostile
//! input (random bytes, truncations, deep nesting), partly as property tests.

use proptest::prelude::*;

use super::*;

// ---- helpers ------------------------------------------------------------------------------

fn parse_ok(query: &str) -> Vec<Statement> {
    match parse_query(query) {
        Ok(statements) => statements,
        Err(e) => panic!("{query:?} failed: {e}"),
    }
}

fn parse_one(query: &str) -> Statement {
    let mut statements = parse_ok(query);
    assert_eq!(statements.len(), 1, "{query:?}");
    statements.remove(0)
}

fn select(query: &str) -> SelectStatement {
    match parse_one(query) {
        Statement::Select(s) => s,
        other => panic!("{query:?} is not a SELECT: {other:?}"),
    }
}

fn parse_err(query: &str) -> ParseError {
    match parse_query(query) {
        Ok(statements) => panic!("{query:?} parsed: {statements:?}"),
        Err(e) => e,
    }
}

/// The full error text, as InfluxDB prints it.
fn err_text(query: &str) -> String {
    parse_err(query).to_string()
}

fn expr(text: &str) -> Expr {
    match parse_expr(text) {
        Ok(e) => e,
        Err(e) => panic!("{text:?} failed: {e}"),
    }
}

fn var(name: &str) -> Expr {
    Expr::VarRef(VarRef {
        name: name.to_string(),
        data_type: None,
    })
}

fn typed(name: &str, data_type: DataType) -> Expr {
    Expr::VarRef(VarRef {
        name: name.to_string(),
        data_type: Some(data_type),
    })
}

fn bin(lhs: Expr, op: BinaryOp, rhs: Expr) -> Expr {
    Expr::Binary(BinaryExpr {
        op,
        lhs: Box::new(lhs),
        rhs: Box::new(rhs),
    })
}

fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Call(Call {
        name: name.to_string(),
        args,
    })
}

fn paren(inner: Expr) -> Expr {
    Expr::Paren(Box::new(inner))
}

fn s(text: &str) -> Expr {
    Expr::Str(text.to_string())
}

fn re(pattern: &str) -> RegexLiteral {
    RegexLiteral::new(pattern).unwrap()
}

fn measurement(name: &str) -> Measurement {
    Measurement {
        database: None,
        retention_policy: None,
        name: MeasurementName::Name(name.to_string()),
    }
}

fn field(expr: Expr) -> Field {
    Field { expr, alias: None }
}

const SECOND: i64 = 1_000_000_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;

/// Printing then parsing gives the same statements.
fn assert_round_trip(query: &str) {
    let statements = parse_ok(query);
    let printed: Vec<String> = statements.iter().map(|s| s.to_string()).collect();
    let text = printed.join("; ");
    let again = match parse_query(&text) {
        Ok(again) => again,
        Err(e) => panic!("printed form of {query:?} does not parse: {text:?}: {e}"),
    };
    assert_eq!(statements, again, "{query:?} printed as {text:?}");
}

/// Valid queries of every kind, used by the round-trip and truncation tests.
const VALID_QUERIES: &[&str] = &[
    // Grafana (InfluxQL mode).
    r#"SELECT mean("value") FROM "cpu" WHERE ("host" =~ /^(a|b)$/) AND time >= 1700000000000ms and time <= 1700003600000ms GROUP BY time(10s), "host" fill(null)"#,
    r#"SELECT mean("usage_idle") FROM "autogen"."cpu" WHERE ("cpu" = 'cpu-total') AND time >= now() - 6h and time <= now() GROUP BY time(1m) fill(none)"#,
    r#"SELECT non_negative_derivative(mean("bytes_recv"), 1s) FROM "net" WHERE time >= now() - 1h GROUP BY time(30s), "interface" fill(null)"#,
    r#"SELECT percentile("latency", 95) AS "p95" FROM "http" WHERE time > now() - 5m GROUP BY time(30s) fill(none)"#,
    r#"SELECT "value"::field, "host"::tag FROM "m" WHERE time >= 1700000000000ms ORDER BY time DESC LIMIT 10"#,
    r#"SELECT last("value") FROM "temp" WHERE "sensor" =~ /^(s1|s2)$/ AND time >= now() - 24h GROUP BY time(5m), "sensor" fill(previous) tz('Europe/Paris')"#,
    r#"SELECT mean("value") * 100 AS "pct" FROM "disk" WHERE "path" !~ /^\/boot/ AND time > now() - 1h GROUP BY time(1m) fill(linear)"#,
    r#"SELECT count(distinct("user")) FROM "logins" WHERE time > now() - 1d GROUP BY time(1h) fill(0)"#,
    r#"SELECT spread("v"), stddev("v"), mode("v"), median("v"), sum("v"), min("v"), max("v"), first("v") FROM "m""#,
    r#"SHOW TAG VALUES FROM "cpu" WITH KEY = "host" WHERE "region" = 'eu'"#,
    r#"SHOW TAG VALUES WITH KEY IN ("host", "region")"#,
    r#"SHOW TAG VALUES ON "telegraf" FROM "cpu" WITH KEY =~ /ho.*/ WHERE time > now() - 1h LIMIT 100"#,
    "SHOW MEASUREMENTS WITH MEASUREMENT =~ /cpu.*/ LIMIT 100",
    "SHOW MEASUREMENTS WITH MEASUREMENT =~ /(?i)cp/ LIMIT 100",
    r#"SHOW RETENTION POLICIES on "telegraf""#,
    r#"SHOW TAG KEYS FROM "cpu""#,
    r#"SHOW FIELD KEYS FROM "cpu""#,
    // influx CLI / Chronograf.
    "SHOW DATABASES",
    "SHOW MEASUREMENTS",
    r#"SHOW MEASUREMENTS ON "telegraf""#,
    "SHOW MEASUREMENTS ON telegraf.autogen WHERE host = 'a' ORDER BY time DESC LIMIT 5 OFFSET 2",
    "SHOW SERIES",
    "SHOW SERIES ON db FROM cpu WHERE host = 'a' LIMIT 10 OFFSET 5",
    "SHOW TAG KEYS ON db FROM cpu, mem WITH KEY IN (host) WHERE a = 'b' LIMIT 1 OFFSET 2 SLIMIT 3 SOFFSET 4",
    "SHOW FIELD KEYS ON db FROM /c.*/ LIMIT 3",
    "SHOW USERS",
    "SHOW STATS",
    "SHOW STATS FOR 'httpd'",
    "SHOW DIAGNOSTICS FOR 'build'",
    "SHOW SHARDS",
    "SHOW SHARD GROUPS",
    "SHOW QUERIES",
    "SHOW CONTINUOUS QUERIES",
    r#"SHOW GRANTS FOR "admin""#,
    "SHOW GRANTS",
    "SHOW SUBSCRIPTIONS",
    "SHOW MEASUREMENT CARDINALITY",
    "SHOW MEASUREMENT EXACT CARDINALITY ON db FROM cpu WHERE host = 'a' GROUP BY region LIMIT 1",
    "SHOW SERIES EXACT CARDINALITY ON db",
    "SHOW SERIES CARDINALITY FROM cpu",
    "SHOW TAG VALUES EXACT CARDINALITY ON db FROM cpu WITH KEY = host",
    "SHOW TAG VALUES CARDINALITY WITH KEY =~ /h/",
    "SHOW TAG KEY CARDINALITY",
    "SHOW TAG KEY EXACT CARDINALITY FROM cpu",
    "SHOW FIELD KEY CARDINALITY ON db",
    "SHOW FIELD KEY EXACT CARDINALITY",
    "SELECT * FROM cpu LIMIT 10",
    // Python client.
    r#"CREATE DATABASE "mydb""#,
    r#"DROP DATABASE "mydb""#,
    r#"DROP MEASUREMENT "m""#,
    r#"DROP SERIES FROM "m" WHERE "t" = 'v'"#,
    r#"SHOW SERIES ON "mydb" FROM "m""#,
    // Edge cases.
    r#"SELECT "my field", "a.b" AS "x y", "sel\"ect" FROM "my measurement", db..m, db.rp.m, rp.m, "quoted.db".."m.x""#,
    "SELECT * FROM /^cpu/, db.rp./mem/, db../disk/, rp./net/",
    "SELECT a FROM m WHERE time > '2024-01-01' AND b = 'it\\'s' AND c <> 1 AND d != 2.5 AND e = true",
    "SELECT a + b * c - d / e % f & g | h ^ i FROM m",
    "SELECT -a, -1, -1.5, +a, -(a + b), a / -b, a - -b, -mean(x) FROM m WHERE x > -5m",
    "SELECT a FROM m WHERE x = -9223372036854775808 OR y = 18446744073709551615",
    "SELECT mean(*), mean(/^cpu_/), count(*::field), *::tag FROM m GROUP BY *",
    "SELECT /u.*/ FROM m GROUP BY /reg/, time(1h, -5m)",
    "SELECT max(v) FROM m GROUP BY time(1h, now()) fill(-1.5) ORDER BY time ASC LIMIT 1 OFFSET 1 SLIMIT 2 SOFFSET 3",
    "SELECT DISTINCT host FROM m",
    "SELECT count(DISTINCT host) FROM m",
    "SELECT top(value, host, 3), bottom(value, 2) FROM m",
    "SELECT a FROM m WHERE (a = 1 OR (b = 2 AND c =~ /x\\/y/)) AND time > now() - 1h30m",
    "SELECT a FROM m WHERE time >= '2024-01-01T00:00:00Z' + 10m AND time < '2024-01-02 00:00:00' - 1s",
    "SELECT value FROM m WHERE \"name\" = 'n' AND \"key\" = 'k'",
    "CREATE DATABASE db WITH DURATION 1d REPLICATION 1 SHARD DURATION 1h NAME rp",
    "CREATE DATABASE db WITH DURATION INF",
    "CREATE DATABASE db WITH NAME rp",
    "CREATE DATABASE db WITH FUTURE LIMIT 1h PAST LIMIT 2h",
    "DELETE FROM cpu WHERE time < '2020-01-01'",
    "DELETE WHERE host = 'a'",
    "DELETE FROM rp.cpu",
    "DROP SERIES WHERE host = 'a'",
    "DROP SERIES FROM /cpu.*/",
    "SELECT 1e3, 2.5E-3, .5, 5., 1e+2 FROM m",
    "SELECT a FROM m; SELECT b FROM n;",
];

// ---- lexing ---------------------------------------------------------------------------------

#[test]
fn identifiers_bare_and_quoted() {
    assert_eq!(expr("value"), var("value"));
    assert_eq!(expr("_v9"), var("_v9"));
    assert_eq!(expr(r#""my field""#), var("my field"));
    assert_eq!(expr(r#""a.b""#), var("a.b"));
    assert_eq!(expr(r#""say \"hi\"""#), var("say \"hi\""));
    assert_eq!(expr(r#""back\\slash""#), var("back\\slash"));
    assert_eq!(expr(r#""new\nline""#), var("new\nline"));
    assert_eq!(expr(r#""select""#), var("select"));
    assert_eq!(expr(r#""""#), var(""));
    // A bare name with dots is one reference, as in InfluxDB.
    assert_eq!(expr("a.b"), var("a.b"));
    assert_eq!(expr(r#""a"."b""#), var("a.b"));
}

#[test]
fn keywords_are_case_insensitive() {
    for query in ["select * from m", "SeLeCt * FrOm m", "SELECT * FROM m"] {
        let st = select(query);
        assert_eq!(st.fields, vec![field(Expr::Wildcard(None))]);
        assert_eq!(st.sources, vec![measurement("m")]);
    }
    assert_eq!(expr("a and b OR c"), expr("a AND b or c"));
    assert_eq!(expr("TRUE"), Expr::Bool(true));
    assert_eq!(expr("false"), Expr::Bool(false));
}

#[test]
fn reserved_words_need_quotes() {
    assert_eq!(
        err_text("SELECT name FROM m"),
        "error parsing query: found NAME, expected identifier, string, number, bool at line 1, char 8"
    );
    assert_eq!(
        select(r#"SELECT "name" FROM m"#).fields,
        vec![field(var("name"))]
    );
}

#[test]
fn string_literals_and_escapes() {
    assert_eq!(expr("'plain'"), s("plain"));
    assert_eq!(expr(r"'it\'s'"), s("it's"));
    assert_eq!(expr(r"'a\\b'"), s("a\\b"));
    assert_eq!(expr(r"'a\nb'"), s("a\nb"));
    assert_eq!(expr(r#"'say \"x\"'"#), s("say \"x\""));
    assert_eq!(expr("'héllo wörld ✓'"), s("héllo wörld ✓"));
    assert_eq!(expr("''"), s(""));

    let e = parse_err(r"SELECT a FROM m WHERE b = 'x\q'");
    assert_eq!(e.message, r"bad escape: \q");
    assert_eq!(e.column, 29);
    let e = parse_err("SELECT a FROM m WHERE b = 'open");
    assert_eq!(e.message, "unterminated string literal");
    assert_eq!(e.column, 27);
    assert_eq!(
        parse_err("SELECT a FROM m WHERE b = 'two\nlines'").message,
        "newline in string literal"
    );
    assert_eq!(
        parse_err("SELECT \"open FROM m").message,
        "unterminated quoted identifier"
    );
}

#[test]
fn numbers() {
    assert_eq!(expr("42"), Expr::Integer(42));
    assert_eq!(expr("0"), Expr::Integer(0));
    assert_eq!(expr("1.5"), Expr::Number(1.5));
    assert_eq!(expr(".5"), Expr::Number(0.5));
    assert_eq!(expr("5."), Expr::Number(5.0));
    assert_eq!(expr("1e3"), Expr::Number(1000.0));
    assert_eq!(expr("2.5E-3"), Expr::Number(0.0025));
    assert_eq!(expr("1e+2"), Expr::Number(100.0));
    assert_eq!(expr("-7"), Expr::Integer(-7));
    assert_eq!(expr("-0.25"), Expr::Number(-0.25));
    assert_eq!(expr("9223372036854775807"), Expr::Integer(i64::MAX));
    assert_eq!(expr("-9223372036854775808"), Expr::Integer(i64::MIN));
    assert_eq!(expr("9223372036854775808"), Expr::Unsigned(1 << 63));
    assert_eq!(expr("18446744073709551615"), Expr::Unsigned(u64::MAX));
    assert_eq!(
        parse_expr("-9223372036854775809").unwrap_err().message,
        "constant -9223372036854775809 underflows int64"
    );
    assert_eq!(
        parse_expr("18446744073709551616").unwrap_err().message,
        "unable to parse integer 18446744073709551616"
    );
    assert_eq!(
        parse_expr("1e999").unwrap_err().message,
        "unable to parse number 1e999"
    );
}

#[test]
fn durations() {
    let cases = [
        ("1ns", 1),
        ("5u", 5_000),
        ("5µ", 5_000),
        ("500ms", 500_000_000),
        ("10s", 10 * SECOND),
        ("10m", 10 * MINUTE),
        ("2h", 2 * HOUR),
        ("1h30m", 90 * MINUTE),
        ("1d", 24 * HOUR),
        ("1w", 7 * 24 * HOUR),
        ("1700000000000ms", 1_700_000_000_000_000_000),
    ];
    for (text, ns) in cases {
        assert_eq!(expr(text), Expr::Duration(ns), "{text}");
        assert_eq!(parse_duration(text), Ok(ns), "{text}");
    }
    assert_eq!(expr("-5m"), Expr::Duration(-5 * MINUTE));
    assert_eq!(parse_duration("-1h"), Ok(-HOUR));
    assert_eq!(parse_duration("10x"), Err(DurationError::Invalid));
    assert_eq!(parse_duration("1h30"), Err(DurationError::Invalid));
    assert_eq!(parse_duration("h"), Err(DurationError::Invalid));
    assert_eq!(parse_duration("1n"), Err(DurationError::Invalid));
    assert_eq!(parse_duration("1000000w"), Err(DurationError::Overflow));
    assert_eq!(
        parse_duration("99999999999999999999s"),
        Err(DurationError::Overflow)
    );

    let e = parse_err("SELECT a FROM m GROUP BY time(10x)");
    assert_eq!(e.message, "invalid duration 10x");
    assert_eq!(e.column, 31);
    assert!(
        parse_err("SELECT a FROM m WHERE time > now() - 1000000w")
            .message
            .starts_with("overflowed duration 1000000w")
    );
}

#[test]
fn format_duration_uses_largest_exact_unit() {
    let cases = [
        (0, "0s"),
        (1, "1ns"),
        (1_500, "1500ns"),
        (5_000, "5u"),
        (500_000_000, "500ms"),
        (90 * MINUTE, "90m"),
        (2 * HOUR, "2h"),
        (48 * HOUR, "2d"),
        (14 * 24 * HOUR, "2w"),
        (-5 * MINUTE, "-5m"),
    ];
    for (ns, text) in cases {
        assert_eq!(format_duration(ns), text);
        assert_eq!(parse_duration(text), Ok(ns), "{text}");
    }
    assert_eq!(format_duration(i64::MIN), "-9223372036854775808ns");
}

#[test]
fn operators_and_comments() {
    let ops = [
        ("+", BinaryOp::Add),
        ("-", BinaryOp::Sub),
        ("*", BinaryOp::Mul),
        ("/", BinaryOp::Div),
        ("%", BinaryOp::Mod),
        ("&", BinaryOp::BitAnd),
        ("|", BinaryOp::BitOr),
        ("^", BinaryOp::BitXor),
        ("=", BinaryOp::Eq),
        ("!=", BinaryOp::Neq),
        ("<>", BinaryOp::Neq),
        ("<", BinaryOp::Lt),
        ("<=", BinaryOp::Lte),
        (">", BinaryOp::Gt),
        (">=", BinaryOp::Gte),
        ("AND", BinaryOp::And),
        ("OR", BinaryOp::Or),
    ];
    for (text, op) in ops {
        assert_eq!(
            expr(&format!("a {text} b")),
            bin(var("a"), op, var("b")),
            "{text}"
        );
    }
    assert_eq!(
        expr("a =~ /x/"),
        bin(var("a"), BinaryOp::EqRegex, Expr::Regex(re("x")))
    );
    assert_eq!(
        expr("a !~ /x/"),
        bin(var("a"), BinaryOp::NeqRegex, Expr::Regex(re("x")))
    );
    let with_comments = "SELECT /* all */ a -- the field\nFROM m /* trailing */ -- end";
    assert_eq!(select(with_comments), select("SELECT a FROM m"));
    assert_eq!(
        parse_err("SELECT a FROM m /* open").message,
        "unterminated comment"
    );
    // `--` starts a comment even right after an operand.
    assert_eq!(expr("a --1"), var("a"));
}

#[test]
fn casts() {
    let cases = [
        ("float", DataType::Float),
        ("integer", DataType::Integer),
        ("unsigned", DataType::Unsigned),
        ("string", DataType::String),
        ("boolean", DataType::Boolean),
        ("field", DataType::Field),
        ("tag", DataType::Tag),
        ("FLOAT", DataType::Float),
    ];
    for (text, data_type) in cases {
        assert_eq!(expr(&format!("v::{text}")), typed("v", data_type));
    }
    assert_eq!(
        expr(r#""host"::tag = 'a'"#),
        bin(typed("host", DataType::Tag), BinaryOp::Eq, s("a"))
    );
    assert_eq!(expr("*::field"), Expr::Wildcard(Some(WildcardType::Field)));
    assert_eq!(expr("*::tag"), Expr::Wildcard(Some(WildcardType::Tag)));
    assert_eq!(
        err_text("SELECT a::bogus FROM m"),
        "error parsing query: found bogus, expected float, integer, unsigned, string, boolean, field, tag at line 1, char 11"
    );
    assert_eq!(
        parse_err("SELECT *::float FROM m").message,
        "found float, expected field, tag"
    );
}

#[test]
fn regex_literals() {
    let st = select(r"SELECT a FROM m WHERE host =~ /^web\d+\/x$/");
    let Some(Expr::Binary(b)) = st.condition else {
        panic!()
    };
    let Expr::Regex(r) = *b.rhs else { panic!() };
    assert_eq!(r.as_str(), r"^web\d+/x$");
    assert!(r.regex().is_match("web12/x"));
    assert!(!r.regex().is_match("web/x"));
    // Unanchored, as in InfluxDB.
    assert!(re("cpu").regex().is_match("my_cpu_total"));
    assert_eq!(r.to_string(), r"/^web\d+\/x$/");

    let e = parse_err("SELECT a FROM m WHERE host =~ /(unclosed/");
    assert!(e.message.starts_with("bad regex /(unclosed/:"), "{e}");
    assert_eq!(e.column, 31);
    assert!(!e.message.contains('\n'));
    assert_eq!(
        parse_err("SELECT a FROM m WHERE host =~ /open").message,
        "bad regex: missing closing /"
    );
    // A regex is only lexed where InfluxQL allows one.
    assert_eq!(
        parse_err("SELECT a FROM m WHERE host = /x/").message,
        "found /, expected identifier, string, number, bool"
    );
    assert_eq!(
        parse_err("SELECT a FROM m WHERE host =~ 'x'").message,
        "found x, expected regex"
    );
    // Size limit: a huge repetition does not compile.
    let e = parse_err("SELECT a FROM m WHERE host =~ /(((a{100}){100}){100}){100}/");
    assert!(e.message.starts_with("bad regex"), "{e}");
}

#[test]
fn illegal_characters_and_bound_parameters() {
    assert_eq!(
        err_text("SELECT a FROM m WHERE @"),
        "error parsing query: found @, expected identifier, string, number, bool at line 1, char 23"
    );
    assert_eq!(
        parse_err("SELECT a FROM m WHERE b ! c").message,
        "found !, expected ;"
    );
    let e = parse_err("SELECT a FROM m WHERE host = $host");
    assert_eq!(e.kind, ParseErrorKind::Unsupported);
    assert_eq!(e.message, "bound parameters are not supported");
}

// ---- expressions ------------------------------------------------------------------------------

#[test]
fn operator_precedence() {
    let (a, b, c) = (var("a"), var("b"), var("c"));
    assert_eq!(
        expr("a + b * c"),
        bin(
            a.clone(),
            BinaryOp::Add,
            bin(b.clone(), BinaryOp::Mul, c.clone())
        )
    );
    assert_eq!(
        expr("a * b + c"),
        bin(
            bin(a.clone(), BinaryOp::Mul, b.clone()),
            BinaryOp::Add,
            c.clone()
        )
    );
    assert_eq!(
        expr("a - b - c"),
        bin(
            bin(a.clone(), BinaryOp::Sub, b.clone()),
            BinaryOp::Sub,
            c.clone()
        )
    );
    assert_eq!(
        expr("a / b / c"),
        bin(
            bin(a.clone(), BinaryOp::Div, b.clone()),
            BinaryOp::Div,
            c.clone()
        )
    );
    // `&` binds like `*`, `|` and `^` like `+`.
    assert_eq!(
        expr("a & b + c"),
        bin(
            bin(a.clone(), BinaryOp::BitAnd, b.clone()),
            BinaryOp::Add,
            c.clone()
        )
    );
    assert_eq!(
        expr("a | b & c"),
        bin(
            a.clone(),
            BinaryOp::BitOr,
            bin(b.clone(), BinaryOp::BitAnd, c.clone())
        )
    );
    assert_eq!(
        expr("a ^ b % c"),
        bin(
            a.clone(),
            BinaryOp::BitXor,
            bin(b.clone(), BinaryOp::Mod, c.clone())
        )
    );
    assert_eq!(
        expr("a OR b AND c"),
        bin(
            a.clone(),
            BinaryOp::Or,
            bin(b.clone(), BinaryOp::And, c.clone())
        )
    );
    assert_eq!(
        expr("a = 1 AND b > 2 OR c < 3"),
        bin(
            bin(
                bin(a.clone(), BinaryOp::Eq, Expr::Integer(1)),
                BinaryOp::And,
                bin(b.clone(), BinaryOp::Gt, Expr::Integer(2))
            ),
            BinaryOp::Or,
            bin(c.clone(), BinaryOp::Lt, Expr::Integer(3))
        )
    );
    assert_eq!(
        expr("(a + b) * c"),
        bin(
            paren(bin(a.clone(), BinaryOp::Add, b.clone())),
            BinaryOp::Mul,
            c.clone()
        )
    );
    assert_eq!(
        expr("a + 1 > b * 2"),
        bin(
            bin(a.clone(), BinaryOp::Add, Expr::Integer(1)),
            BinaryOp::Gt,
            bin(b.clone(), BinaryOp::Mul, Expr::Integer(2))
        )
    );
    assert_eq!(
        expr("host =~ /a/ AND x = 1"),
        bin(
            bin(var("host"), BinaryOp::EqRegex, Expr::Regex(re("a"))),
            BinaryOp::And,
            bin(var("x"), BinaryOp::Eq, Expr::Integer(1))
        )
    );
}

#[test]
fn unary_signs() {
    assert_eq!(expr("-1"), Expr::Integer(-1));
    assert_eq!(expr("- 1"), Expr::Integer(-1));
    assert_eq!(expr("+1"), Expr::Integer(1));
    assert_eq!(expr("-1.5"), Expr::Number(-1.5));
    assert_eq!(expr("-5m"), Expr::Duration(-5 * MINUTE));
    assert_eq!(expr("-x"), bin(Expr::Integer(-1), BinaryOp::Mul, var("x")));
    assert_eq!(expr("+x"), bin(Expr::Integer(1), BinaryOp::Mul, var("x")));
    assert_eq!(
        expr("-mean(x)"),
        bin(
            Expr::Integer(-1),
            BinaryOp::Mul,
            call("mean", vec![var("x")])
        )
    );
    assert_eq!(
        expr("-(a)"),
        bin(Expr::Integer(-1), BinaryOp::Mul, paren(var("a")))
    );
    assert_eq!(
        expr("a - -1"),
        bin(var("a"), BinaryOp::Sub, Expr::Integer(-1))
    );
    assert_eq!(
        parse_expr("- -1").unwrap_err().message,
        "found -, expected identifier, number, duration, ("
    );
    assert_eq!(
        parse_expr("-'x'").unwrap_err().message,
        "found x, expected identifier, number, duration, ("
    );
}

#[test]
fn calls() {
    assert_eq!(expr("MEAN(value)"), call("mean", vec![var("value")]));
    assert_eq!(expr("now()"), call("now", vec![]));
    assert_eq!(expr("now( )"), call("now", vec![]));
    assert_eq!(
        expr("percentile(value, 95)"),
        call("percentile", vec![var("value"), Expr::Integer(95)])
    );
    assert_eq!(
        expr("count(distinct(f))"),
        call("count", vec![call("distinct", vec![var("f")])])
    );
    assert_eq!(
        expr("count(DISTINCT f)"),
        call("count", vec![call("distinct", vec![var("f")])])
    );
    assert_eq!(expr("mean(*)"), call("mean", vec![Expr::Wildcard(None)]));
    assert_eq!(
        expr("mean(/^cpu/)"),
        call("mean", vec![Expr::Regex(re("^cpu"))])
    );
    assert_eq!(
        expr("f(a, /x/, 1s)"),
        call(
            "f",
            vec![var("a"), Expr::Regex(re("x")), Expr::Duration(SECOND)]
        )
    );
    assert_eq!(
        expr(r#""Mixed Case"(x)"#),
        call("mixed case", vec![var("x")])
    );
    assert_eq!(
        expr("holt_winters_with_fit(first(value), 10, 4)"),
        call(
            "holt_winters_with_fit",
            vec![
                call("first", vec![var("value")]),
                Expr::Integer(10),
                Expr::Integer(4)
            ]
        )
    );
    // A call needs its parenthesis right after the name, as in InfluxDB.
    assert_eq!(
        parse_err("SELECT mean (value) FROM m").message,
        "found (, expected FROM"
    );
    assert_eq!(
        parse_err("SELECT mean(value FROM m").message,
        "found FROM, expected )"
    );
    assert_eq!(
        parse_err("SELECT DISTINCT FROM m").message,
        "found FROM, expected identifier"
    );
}

// ---- SELECT ---------------------------------------------------------------------------------

#[test]
fn grafana_mean_by_host() {
    let st = select(VALID_QUERIES[0]);
    assert_eq!(st.fields, vec![field(call("mean", vec![var("value")]))]);
    assert_eq!(st.sources, vec![measurement("cpu")]);
    assert_eq!(
        st.condition,
        Some(bin(
            bin(
                paren(bin(
                    var("host"),
                    BinaryOp::EqRegex,
                    Expr::Regex(re("^(a|b)$"))
                )),
                BinaryOp::And,
                bin(
                    var("time"),
                    BinaryOp::Gte,
                    Expr::Duration(1_700_000_000_000_000_000)
                )
            ),
            BinaryOp::And,
            bin(
                var("time"),
                BinaryOp::Lte,
                Expr::Duration(1_700_003_600_000_000_000)
            )
        ))
    );
    assert_eq!(
        st.dimensions,
        vec![
            Dimension::Time {
                interval_ns: 10 * SECOND,
                offset: None
            },
            Dimension::Tag("host".to_string())
        ]
    );
    assert_eq!(st.fill, Fill::Null);
    assert_eq!(st.order, SortOrder::Asc);
    assert_eq!(st.limit, None);
    assert_eq!(st.timezone, None);

    let (rest, range) = split_time_range(st.condition.as_ref(), 0).unwrap();
    assert_eq!(
        rest,
        Some(bin(
            var("host"),
            BinaryOp::EqRegex,
            Expr::Regex(re("^(a|b)$"))
        ))
    );
    assert_eq!(
        range,
        TimeRange {
            min_ns: Some(1_700_000_000_000_000_000),
            max_ns: Some(1_700_003_600_000_000_000)
        }
    );
}

#[test]
fn grafana_queries_parse() {
    let st = select(VALID_QUERIES[1]);
    assert_eq!(
        st.sources,
        vec![Measurement {
            database: None,
            retention_policy: Some("autogen".to_string()),
            name: MeasurementName::Name("cpu".to_string()),
        }]
    );
    assert_eq!(st.fill, Fill::None);

    let st = select(VALID_QUERIES[2]);
    assert_eq!(
        st.fields,
        vec![field(call(
            "non_negative_derivative",
            vec![
                call("mean", vec![var("bytes_recv")]),
                Expr::Duration(SECOND)
            ]
        ))]
    );

    let st = select(VALID_QUERIES[3]);
    assert_eq!(st.fields[0].alias.as_deref(), Some("p95"));
    assert_eq!(
        st.fields[0].expr,
        call("percentile", vec![var("latency"), Expr::Integer(95)])
    );

    let st = select(VALID_QUERIES[4]);
    assert_eq!(
        st.fields,
        vec![
            field(typed("value", DataType::Field)),
            field(typed("host", DataType::Tag))
        ]
    );
    assert_eq!(st.order, SortOrder::Desc);
    assert_eq!(st.limit, Some(10));

    let st = select(VALID_QUERIES[5]);
    assert_eq!(st.fill, Fill::Previous);
    assert_eq!(st.timezone.as_deref(), Some("Europe/Paris"));

    let st = select(VALID_QUERIES[6]);
    assert_eq!(st.fill, Fill::Linear);
    assert_eq!(
        st.fields[0].expr,
        bin(
            call("mean", vec![var("value")]),
            BinaryOp::Mul,
            Expr::Integer(100)
        )
    );

    let st = select(VALID_QUERIES[7]);
    assert_eq!(st.fill, Fill::Integer(0));

    for query in VALID_QUERIES {
        parse_ok(query);
    }
}

#[test]
fn sources() {
    let st = select(
        VALID_QUERIES
            .iter()
            .find(|q| q.contains("my measurement"))
            .unwrap(),
    );
    let qualified = |db: Option<&str>, rp: Option<&str>, name: &str| Measurement {
        database: db.map(str::to_string),
        retention_policy: rp.map(str::to_string),
        name: MeasurementName::Name(name.to_string()),
    };
    assert_eq!(
        st.sources,
        vec![
            measurement("my measurement"),
            qualified(Some("db"), None, "m"),
            qualified(Some("db"), Some("rp"), "m"),
            qualified(None, Some("rp"), "m"),
            qualified(Some("quoted.db"), None, "m.x"),
        ]
    );
    assert_eq!(
        st.fields,
        vec![
            field(var("my field")),
            Field {
                expr: var("a.b"),
                alias: Some("x y".to_string())
            },
            field(var("sel\"ect")),
        ]
    );

    let st = select("SELECT * FROM /^cpu/, db.rp./mem/, db../disk/, rp./net/");
    let regex = |db: Option<&str>, rp: Option<&str>, pattern: &str| Measurement {
        database: db.map(str::to_string),
        retention_policy: rp.map(str::to_string),
        name: MeasurementName::Regex(re(pattern)),
    };
    assert_eq!(
        st.sources,
        vec![
            regex(None, None, "^cpu"),
            regex(Some("db"), Some("rp"), "mem"),
            regex(Some("db"), None, "disk"),
            regex(None, Some("rp"), "net"),
        ]
    );

    assert_eq!(
        parse_err("SELECT * FROM a.b.c.d").message,
        "too many segments in a.b.c.d"
    );
    assert_eq!(
        err_text("SELECT * FROM"),
        "error parsing query: found EOF, expected identifier at line 1, char 14"
    );
    assert_eq!(
        parse_err("SELECT * FROM m.").message,
        "found EOF, expected identifier"
    );
}

#[test]
fn group_by_dimensions() {
    let dims = |q: &str| select(q).dimensions;
    assert_eq!(
        dims("SELECT a FROM m GROUP BY time(10m, 5m)"),
        vec![Dimension::Time {
            interval_ns: 10 * MINUTE,
            offset: Some(TimeOffset::Duration(5 * MINUTE))
        }]
    );
    assert_eq!(
        dims("SELECT a FROM m GROUP BY time(10m, -5m)"),
        vec![Dimension::Time {
            interval_ns: 10 * MINUTE,
            offset: Some(TimeOffset::Duration(-5 * MINUTE))
        }]
    );
    assert_eq!(
        dims("SELECT a FROM m GROUP BY time(1h, now())"),
        vec![Dimension::Time {
            interval_ns: HOUR,
            offset: Some(TimeOffset::Now)
        }]
    );
    assert_eq!(
        dims(r#"SELECT a FROM m GROUP BY host, "region", *, /^dc/"#),
        vec![
            Dimension::Tag("host".to_string()),
            Dimension::Tag("region".to_string()),
            Dimension::Wildcard,
            Dimension::Regex(re("^dc")),
        ]
    );
    let errors = [
        (
            "GROUP BY time",
            "time() is a function and expects at least one argument",
        ),
        (
            "GROUP BY time(10)",
            "time dimension must have duration argument",
        ),
        (
            "GROUP BY time()",
            "time dimension expected 1 or 2 arguments",
        ),
        (
            "GROUP BY time(1m, 1m, 1m)",
            "time dimension expected 1 or 2 arguments",
        ),
        (
            "GROUP BY time(0s)",
            "time dimension must have a positive duration",
        ),
        (
            "GROUP BY time(1m, 'x')",
            "time dimension offset must be duration or now()",
        ),
        (
            "GROUP BY time(1m), time(2m)",
            "multiple time dimensions not allowed",
        ),
        ("GROUP BY a + b", "only time and tag dimensions allowed"),
        ("GROUP BY 'x'", "only time and tag dimensions allowed"),
        ("GROUP host", "found host, expected BY"),
    ];
    for (clause, message) in errors {
        assert_eq!(
            parse_err(&format!("SELECT a FROM m {clause}")).message,
            message,
            "{clause}"
        );
    }
}

#[test]
fn fill_options() {
    let fill =
        |clause: &str| select(&format!("SELECT mean(a) FROM m GROUP BY time(1m) {clause}")).fill;
    assert_eq!(fill(""), Fill::Null);
    assert_eq!(fill("fill(null)"), Fill::Null);
    assert_eq!(fill("fill(none)"), Fill::None);
    assert_eq!(fill("fill(previous)"), Fill::Previous);
    assert_eq!(fill("fill(linear)"), Fill::Linear);
    assert_eq!(fill("FILL(NONE)"), Fill::None);
    assert_eq!(fill("fill(0)"), Fill::Integer(0));
    assert_eq!(fill("fill(-1)"), Fill::Integer(-1));
    assert_eq!(fill("fill(1.5)"), Fill::Float(1.5));
    assert_eq!(fill("fill(-2.5)"), Fill::Float(-2.5));
    let errors = [
        ("fill(foo)", "expected number argument in fill()"),
        ("fill('x')", "expected number argument in fill()"),
        (
            "fill()",
            "fill requires an argument, e.g.: 0, null, none, previous, linear",
        ),
        (
            "fill(1, 2)",
            "fill requires an argument, e.g.: 0, null, none, previous, linear",
        ),
        ("fill", "fill must be a function call"),
    ];
    for (clause, message) in errors {
        assert_eq!(
            parse_err(&format!("SELECT mean(a) FROM m GROUP BY time(1m) {clause}")).message,
            message,
            "{clause}"
        );
    }
    // fill without GROUP BY parses (InfluxDB checks it later).
    assert_eq!(select("SELECT a FROM m fill(0)").fill, Fill::Integer(0));
}

#[test]
fn order_limit_offset_timezone() {
    let st = select(
        "SELECT a FROM m ORDER BY time DESC LIMIT 10 OFFSET 20 SLIMIT 3 SOFFSET 4 tz('America/Chicago')",
    );
    assert_eq!(st.order, SortOrder::Desc);
    assert_eq!(
        (st.limit, st.offset, st.slimit, st.soffset),
        (Some(10), Some(20), Some(3), Some(4))
    );
    assert_eq!(st.timezone.as_deref(), Some("America/Chicago"));
    assert_eq!(
        select("SELECT a FROM m ORDER BY time").order,
        SortOrder::Asc
    );
    assert_eq!(
        select("SELECT a FROM m ORDER BY time asc").order,
        SortOrder::Asc
    );
    assert_eq!(
        select("SELECT a FROM m ORDER BY DESC").order,
        SortOrder::Desc
    );
    assert_eq!(select("SELECT a FROM m LIMIT 0").limit, None);

    let errors = [
        (
            "ORDER BY value",
            "only ORDER BY time supported at this time",
        ),
        (
            "ORDER BY time, value",
            "only ORDER BY time supported at this time",
        ),
        ("ORDER time", "found time, expected BY"),
        ("ORDER BY 1", "found 1, expected identifier, ASC, DESC"),
        ("LIMIT -1", "found -, expected integer"),
        ("LIMIT x", "found x, expected integer"),
        (
            "LIMIT 99999999999999999999",
            "LIMIT value 99999999999999999999 is out of range",
        ),
        ("tz(1)", "expected string argument in tz()"),
        ("tz()", "tz requires exactly one argument"),
        ("tz", "tz must be a function call"),
        // Clauses come in InfluxDB's fixed order.
        ("LIMIT 1 ORDER BY time", "found ORDER, expected ;"),
    ];
    for (clause, message) in errors {
        assert_eq!(
            parse_err(&format!("SELECT a FROM m {clause}")).message,
            message,
            "{clause}"
        );
    }
}

#[test]
fn select_field_forms() {
    let st = select("SELECT DISTINCT host FROM m");
    assert_eq!(st.fields, vec![field(call("distinct", vec![var("host")]))]);
    let st = select("SELECT /u.*/ FROM m");
    assert_eq!(st.fields, vec![field(Expr::Regex(re("u.*")))]);
    let st = select("SELECT a AS b, c AS \"d e\" FROM m");
    assert_eq!(st.fields[0].alias.as_deref(), Some("b"));
    assert_eq!(st.fields[1].alias.as_deref(), Some("d e"));
    let st = select("SELECT *, time FROM m");
    assert_eq!(
        st.fields,
        vec![field(Expr::Wildcard(None)), field(var("time"))]
    );
}

#[test]
fn boolean_operators_rejected_in_fields() {
    assert_eq!(
        err_text("SELECT a = 1 FROM m"),
        "error parsing query: invalid operator = in SELECT clause at line 1, char 8; operator is intended for WHERE clause"
    );
    assert_eq!(
        parse_err("SELECT x, count(a > 1) FROM m").message,
        "invalid operator > in SELECT clause"
    );
    assert_eq!(
        parse_err("SELECT a AND b FROM m").message,
        "invalid operator AND in SELECT clause"
    );
}

#[test]
fn where_conditions() {
    let cond = |q: &str| select(q).condition.unwrap();
    assert_eq!(
        cond("SELECT a FROM m WHERE time > now() - 1h"),
        bin(
            var("time"),
            BinaryOp::Gt,
            bin(call("now", vec![]), BinaryOp::Sub, Expr::Duration(HOUR))
        )
    );
    assert_eq!(
        cond("SELECT a FROM m WHERE time >= '2024-01-01T00:00:00Z' + 10m"),
        bin(
            var("time"),
            BinaryOp::Gte,
            bin(
                s("2024-01-01T00:00:00Z"),
                BinaryOp::Add,
                Expr::Duration(10 * MINUTE)
            )
        )
    );
    assert_eq!(
        cond("SELECT a FROM m WHERE time > '2024-01-01' "),
        bin(var("time"), BinaryOp::Gt, s("2024-01-01"))
    );
    assert_eq!(
        cond("SELECT a FROM m WHERE b = true AND c != 'x' AND d <> 2.5"),
        bin(
            bin(
                bin(var("b"), BinaryOp::Eq, Expr::Bool(true)),
                BinaryOp::And,
                bin(var("c"), BinaryOp::Neq, s("x"))
            ),
            BinaryOp::And,
            bin(var("d"), BinaryOp::Neq, Expr::Number(2.5))
        )
    );
    assert_eq!(
        parse_err("SELECT a FROM m WHERE").message,
        "found EOF, expected identifier, string, number, bool"
    );
    assert_eq!(
        parse_err("SELECT a FROM m WHERE (a = 1").message,
        "found EOF, expected )"
    );
}

#[test]
fn unsupported_select_features() {
    let e = parse_err("SELECT mean(x) FROM (SELECT x FROM m)");
    assert_eq!(e.kind, ParseErrorKind::Unsupported);
    assert_eq!(e.message, "subqueries are not supported");
    assert_eq!(e.column, 21);
    let e = parse_err(r#"SELECT * INTO "copy" FROM m"#);
    assert_eq!(e.kind, ParseErrorKind::Unsupported);
    assert_eq!(e.message, "SELECT INTO is not supported");
    assert_eq!(
        err_text("SELECT * INTO x FROM m"),
        "error parsing query: SELECT INTO is not supported at line 1, char 10"
    );
}

// ---- other statements ---------------------------------------------------------------------------

#[test]
fn show_statements() {
    assert_eq!(parse_one("SHOW DATABASES"), Statement::ShowDatabases);
    assert_eq!(
        parse_one(r#"SHOW RETENTION POLICIES on "telegraf""#),
        Statement::ShowRetentionPolicies {
            database: Some("telegraf".to_string())
        }
    );
    assert_eq!(
        parse_one("SHOW RETENTION POLICIES"),
        Statement::ShowRetentionPolicies { database: None }
    );
    assert_eq!(
        parse_one("SHOW MEASUREMENTS WITH MEASUREMENT =~ /cpu.*/ LIMIT 100"),
        Statement::ShowMeasurements(ShowMeasurements {
            database: None,
            retention_policy: None,
            with_measurement: Some(Measurement {
                database: None,
                retention_policy: None,
                name: MeasurementName::Regex(re("cpu.*")),
            }),
            condition: None,
            order: SortOrder::Asc,
            limit: Some(100),
            offset: None,
        })
    );
    assert_eq!(
        parse_one("SHOW MEASUREMENTS ON db.rp WITH MEASUREMENT = cpu WHERE host = 'a' OFFSET 3"),
        Statement::ShowMeasurements(ShowMeasurements {
            database: Some("db".to_string()),
            retention_policy: Some("rp".to_string()),
            with_measurement: Some(measurement("cpu")),
            condition: Some(bin(var("host"), BinaryOp::Eq, s("a"))),
            order: SortOrder::Asc,
            limit: None,
            offset: Some(3),
        })
    );
    assert_eq!(
        parse_one(r#"SHOW TAG VALUES FROM "cpu" WITH KEY = "host" WHERE "region" = 'eu'"#),
        Statement::ShowTagValues(ShowTagValues {
            database: None,
            sources: vec![measurement("cpu")],
            tag_key: TagKeyFilter::Eq("host".to_string()),
            condition: Some(bin(var("region"), BinaryOp::Eq, s("eu"))),
            order: SortOrder::Asc,
            limit: None,
            offset: None,
        })
    );
    let key = |q: &str| match parse_one(q) {
        Statement::ShowTagValues(s) => s.tag_key,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        key("SHOW TAG VALUES WITH KEY != host"),
        TagKeyFilter::NotEq("host".to_string())
    );
    assert_eq!(
        key("SHOW TAG VALUES WITH KEY =~ /h/"),
        TagKeyFilter::Regex(re("h"))
    );
    assert_eq!(
        key("SHOW TAG VALUES WITH KEY !~ /h/"),
        TagKeyFilter::NotRegex(re("h"))
    );
    assert_eq!(
        key(r#"SHOW TAG VALUES WITH KEY IN ("host", region)"#),
        TagKeyFilter::In(vec!["host".to_string(), "region".to_string()])
    );
    assert_eq!(
        parse_one("SHOW TAG KEYS ON db FROM cpu WHERE a = 'b' LIMIT 1 OFFSET 2 SLIMIT 3 SOFFSET 4"),
        Statement::ShowTagKeys(ShowTagKeys {
            database: Some("db".to_string()),
            sources: vec![measurement("cpu")],
            tag_key: None,
            condition: Some(bin(var("a"), BinaryOp::Eq, s("b"))),
            order: SortOrder::Asc,
            limit: Some(1),
            offset: Some(2),
            slimit: Some(3),
            soffset: Some(4),
        })
    );
    assert_eq!(
        parse_one(r#"SHOW FIELD KEYS ON "db" FROM "cpu" LIMIT 5"#),
        Statement::ShowFieldKeys(ShowFieldKeys {
            database: Some("db".to_string()),
            sources: vec![measurement("cpu")],
            order: SortOrder::Asc,
            limit: Some(5),
            offset: None,
        })
    );
    assert_eq!(
        parse_one("SHOW SERIES ON db FROM cpu WHERE host = 'a' LIMIT 10 OFFSET 5"),
        Statement::ShowSeries(ShowSeries {
            database: Some("db".to_string()),
            sources: vec![measurement("cpu")],
            condition: Some(bin(var("host"), BinaryOp::Eq, s("a"))),
            order: SortOrder::Asc,
            limit: Some(10),
            offset: Some(5),
        })
    );
}

#[test]
fn show_cardinality() {
    let card = |q: &str| match parse_one(q) {
        Statement::ShowCardinality(c) => c,
        other => panic!("{q}: {other:?}"),
    };
    let cases = [
        (
            "SHOW MEASUREMENT CARDINALITY",
            CardinalityKind::Measurement,
            false,
        ),
        (
            "SHOW MEASUREMENT EXACT CARDINALITY",
            CardinalityKind::Measurement,
            true,
        ),
        ("SHOW SERIES CARDINALITY", CardinalityKind::Series, false),
        (
            "SHOW SERIES EXACT CARDINALITY",
            CardinalityKind::Series,
            true,
        ),
        ("SHOW TAG KEY CARDINALITY", CardinalityKind::TagKey, false),
        (
            "SHOW TAG KEY EXACT CARDINALITY",
            CardinalityKind::TagKey,
            true,
        ),
        (
            "SHOW FIELD KEY CARDINALITY",
            CardinalityKind::FieldKey,
            false,
        ),
        (
            "SHOW FIELD KEY EXACT CARDINALITY",
            CardinalityKind::FieldKey,
            true,
        ),
        (
            "SHOW TAG VALUES CARDINALITY WITH KEY = host",
            CardinalityKind::TagValues,
            false,
        ),
        (
            "SHOW TAG VALUES EXACT CARDINALITY WITH KEY = host",
            CardinalityKind::TagValues,
            true,
        ),
    ];
    for (query, kind, exact) in cases {
        let c = card(query);
        assert_eq!((c.kind, c.exact), (kind, exact), "{query}");
        assert_eq!(c.tag_key.is_some(), kind == CardinalityKind::TagValues);
    }
    let c = card(
        "SHOW SERIES EXACT CARDINALITY ON db FROM cpu WHERE host = 'a' GROUP BY region LIMIT 2 OFFSET 1",
    );
    assert_eq!(c.database.as_deref(), Some("db"));
    assert_eq!(c.sources, vec![measurement("cpu")]);
    assert!(c.condition.is_some());
    assert_eq!(c.dimensions, vec![Dimension::Tag("region".to_string())]);
    assert_eq!((c.limit, c.offset), (Some(2), Some(1)));

    let errors = [
        ("SHOW MEASUREMENT", "found EOF, expected EXACT, CARDINALITY"),
        ("SHOW MEASUREMENT EXACT", "found EOF, expected CARDINALITY"),
        ("SHOW TAG KEY EXACT x", "found x, expected CARDINALITY"),
        ("SHOW SERIES EXACT", "found EOF, expected CARDINALITY"),
        ("SHOW TAG VALUES CARDINALITY", "found EOF, expected WITH"),
        ("SHOW TAG VALUES", "found EOF, expected WITH"),
        (
            "SHOW TAG VALUES WITH KEY host",
            "found host, expected IN, =, =~",
        ),
        (
            "SHOW TAG VALUES WITH KEY IN (a, )",
            "found ), expected identifier",
        ),
        ("SHOW TAG x", "found x, expected KEY, KEYS, VALUES"),
        ("SHOW FIELD x", "found x, expected KEY, KEYS"),
    ];
    for (query, message) in errors {
        assert_eq!(parse_err(query).message, message, "{query}");
    }
}

#[test]
fn system_shows() {
    let cases = [
        ("SHOW USERS", SystemShow::Users),
        ("SHOW GRANTS", SystemShow::Grants { user: None }),
        (
            r#"SHOW GRANTS FOR "admin""#,
            SystemShow::Grants {
                user: Some("admin".to_string()),
            },
        ),
        ("SHOW STATS", SystemShow::Stats { module: None }),
        (
            "SHOW STATS FOR 'httpd'",
            SystemShow::Stats {
                module: Some("httpd".to_string()),
            },
        ),
        ("SHOW DIAGNOSTICS", SystemShow::Diagnostics { module: None }),
        ("SHOW SHARDS", SystemShow::Shards),
        ("SHOW SHARD GROUPS", SystemShow::ShardGroups),
        ("SHOW QUERIES", SystemShow::Queries),
        ("SHOW CONTINUOUS QUERIES", SystemShow::ContinuousQueries),
        ("SHOW SUBSCRIPTIONS", SystemShow::Subscriptions),
    ];
    for (query, expected) in cases {
        assert_eq!(parse_one(query), Statement::ShowSystem(expected), "{query}");
    }
    assert_eq!(
        parse_err("SHOW STATS FOR httpd").message,
        "found httpd, expected string"
    );
    assert_eq!(
        err_text("SHOW FOO"),
        "error parsing query: found FOO, expected CONTINUOUS, DATABASES, DIAGNOSTICS, FIELD, GRANTS, MEASUREMENT, MEASUREMENTS, QUERIES, RETENTION, SERIES, SHARD, SHARDS, STATS, SUBSCRIPTIONS, TAG, USERS at line 1, char 6"
    );
}

#[test]
fn database_statements() {
    assert_eq!(
        parse_one(r#"CREATE DATABASE "mydb""#),
        Statement::CreateDatabase(CreateDatabase {
            name: "mydb".to_string(),
            retention_policy: None
        })
    );
    assert_eq!(
        parse_one("CREATE DATABASE db WITH DURATION 1d REPLICATION 1 SHARD DURATION 1h NAME rp"),
        Statement::CreateDatabase(CreateDatabase {
            name: "db".to_string(),
            retention_policy: Some(RetentionPolicySpec {
                duration_ns: Some(24 * HOUR),
                replication: Some(1),
                shard_duration_ns: Some(HOUR),
                future_limit_ns: None,
                past_limit_ns: None,
                name: Some("rp".to_string()),
            })
        })
    );
    assert_eq!(
        parse_one("CREATE DATABASE db WITH DURATION INF FUTURE LIMIT 1h PAST LIMIT 2h"),
        Statement::CreateDatabase(CreateDatabase {
            name: "db".to_string(),
            retention_policy: Some(RetentionPolicySpec {
                duration_ns: Some(0),
                future_limit_ns: Some(HOUR),
                past_limit_ns: Some(2 * HOUR),
                ..RetentionPolicySpec::default()
            })
        })
    );
    let errors = [
        ("CREATE DATABASE", "found EOF, expected identifier"),
        (
            "CREATE DATABASE db WITH",
            "found EOF, expected DURATION, NAME, REPLICATION, SHARD, FUTURE, PAST",
        ),
        (
            "CREATE DATABASE db WITH DURATION 5",
            "found 5, expected duration",
        ),
        (
            "CREATE DATABASE db WITH REPLICATION 0",
            "invalid value 0: must be 1 <= n <= 2147483647",
        ),
        (
            "CREATE DATABASE db WITH SHARD 1h",
            "found 1h, expected DURATION",
        ),
        (
            "CREATE DATABASE db WITH NAME rp DURATION 1d",
            "found DURATION, expected ;",
        ),
        (
            "CREATE FOO",
            "found FOO, expected CONTINUOUS, DATABASE, USER, RETENTION, SUBSCRIPTION",
        ),
        (
            "DROP FOO",
            "found FOO, expected CONTINUOUS, DATABASE, MEASUREMENT, RETENTION, SERIES, SHARD, SUBSCRIPTION, USER",
        ),
    ];
    for (query, message) in errors {
        assert_eq!(parse_err(query).message, message, "{query}");
    }
    assert_eq!(
        parse_one(r#"DROP DATABASE "mydb""#),
        Statement::DropDatabase {
            name: "mydb".to_string()
        }
    );
    assert_eq!(
        parse_one(r#"DROP MEASUREMENT "m""#),
        Statement::DropMeasurement {
            name: "m".to_string()
        }
    );
}

#[test]
fn drop_series_and_delete() {
    assert_eq!(
        parse_one(r#"DROP SERIES FROM "m" WHERE "t" = 'v'"#),
        Statement::DropSeries(SeriesFilter {
            sources: vec![measurement("m")],
            condition: Some(bin(var("t"), BinaryOp::Eq, s("v"))),
        })
    );
    assert_eq!(
        parse_one("DROP SERIES WHERE host = 'a'"),
        Statement::DropSeries(SeriesFilter {
            sources: vec![],
            condition: Some(bin(var("host"), BinaryOp::Eq, s("a"))),
        })
    );
    assert_eq!(
        parse_one("DELETE FROM cpu"),
        Statement::Delete(SeriesFilter {
            sources: vec![measurement("cpu")],
            condition: None,
        })
    );
    assert!(matches!(
        parse_one("DELETE FROM rp.cpu WHERE time < '2020-01-01'"),
        Statement::Delete(SeriesFilter {
            condition: Some(_),
            ..
        })
    ));
    assert_eq!(
        err_text("DROP SERIES"),
        "error parsing query: found EOF, expected FROM, WHERE at line 1, char 12"
    );
    assert_eq!(
        parse_err("DELETE").message,
        "found EOF, expected FROM, WHERE"
    );
    assert_eq!(
        parse_err("DELETE LIMIT 1").message,
        "found LIMIT, expected FROM, WHERE"
    );
    assert_eq!(
        parse_err("DROP SERIES FROM db.rp.m").message,
        "database not supported"
    );
    assert_eq!(
        parse_err("DROP SERIES FROM rp.m").message,
        "retention policy not supported"
    );
    assert_eq!(
        parse_err("DELETE FROM db..m").message,
        "database not supported"
    );
}

#[test]
fn unsupported_statements_name_the_feature() {
    let cases = [
        (
            r#"CREATE RETENTION POLICY "rp" ON "db" DURATION 1d REPLICATION 1 DEFAULT"#,
            "CREATE RETENTION POLICY is not supported",
        ),
        (
            "ALTER RETENTION POLICY rp ON db DURATION 2d",
            "ALTER RETENTION POLICY is not supported",
        ),
        (
            "DROP RETENTION POLICY rp ON db",
            "DROP RETENTION POLICY is not supported",
        ),
        (
            "CREATE USER bob WITH PASSWORD 'x'",
            "CREATE USER is not supported",
        ),
        ("DROP USER bob", "DROP USER is not supported"),
        (
            "SET PASSWORD FOR bob = 'x'",
            "SET PASSWORD is not supported",
        ),
        ("GRANT ALL TO bob", "GRANT is not supported"),
        ("REVOKE READ ON db FROM bob", "REVOKE is not supported"),
        ("KILL QUERY 36", "KILL QUERY is not supported"),
        (
            "CREATE CONTINUOUS QUERY cq ON db BEGIN SELECT mean(x) INTO y FROM m GROUP BY time(1m) END",
            "CREATE CONTINUOUS QUERY is not supported",
        ),
        (
            "DROP CONTINUOUS QUERY cq ON db",
            "DROP CONTINUOUS QUERY is not supported",
        ),
        (
            "CREATE SUBSCRIPTION s ON db.rp DESTINATIONS ALL 'udp://h:1'",
            "CREATE SUBSCRIPTION is not supported",
        ),
        (
            "DROP SUBSCRIPTION s ON db.rp",
            "DROP SUBSCRIPTION is not supported",
        ),
        ("DROP SHARD 1", "DROP SHARD is not supported"),
        ("EXPLAIN SELECT * FROM m", "EXPLAIN is not supported"),
        (
            "EXPLAIN ANALYZE SELECT * FROM m",
            "EXPLAIN is not supported",
        ),
        (
            "SHOW MEASUREMENTS ON *",
            "SHOW MEASUREMENTS ON with a wildcard is not supported",
        ),
    ];
    for (query, message) in cases {
        let e = parse_err(query);
        assert_eq!(e.kind, ParseErrorKind::Unsupported, "{query}");
        assert_eq!(e.message, message, "{query}");
    }
    assert_eq!(
        err_text("SHOW DATABASES; CREATE USER bob WITH PASSWORD 'x'"),
        "error parsing query: CREATE USER is not supported at line 1, char 17"
    );
    // The statement keywords are still checked.
    assert_eq!(
        parse_err("ALTER POLICY").message,
        "found POLICY, expected RETENTION"
    );
}

#[test]
fn multiple_statements() {
    assert_eq!(
        parse_ok("SHOW DATABASES; SHOW MEASUREMENTS"),
        vec![Statement::ShowDatabases, parse_one("SHOW MEASUREMENTS")]
    );
    assert_eq!(parse_ok("SHOW DATABASES;").len(), 1);
    assert_eq!(parse_ok(";;SHOW DATABASES;;;SHOW DATABASES;").len(), 2);
    assert!(parse_ok("").is_empty());
    assert!(parse_ok("  ;  -- nothing\n ; ").is_empty());
    assert_eq!(
        err_text("SHOW DATABASES SHOW DATABASES"),
        "error parsing query: found SHOW, expected ; at line 1, char 16"
    );
    assert_eq!(
        parse_err("SELECT a FROM m garbage").message,
        "found garbage, expected ;"
    );
}

// ---- error messages ---------------------------------------------------------------------------

#[test]
fn error_messages_match_influxdb() {
    let cases = [
        (
            "FOO",
            "error parsing query: found FOO, expected SELECT, DELETE, SHOW, CREATE, DROP, EXPLAIN, GRANT, REVOKE, ALTER, SET, KILL at line 1, char 1",
        ),
        (
            "SELECT",
            "error parsing query: found EOF, expected identifier, string, number, bool at line 1, char 7",
        ),
        (
            "SELECT FROM m",
            "error parsing query: found FROM, expected identifier, string, number, bool at line 1, char 8",
        ),
        (
            "SELECT value",
            "error parsing query: found EOF, expected FROM at line 1, char 13",
        ),
        (
            "SELECT value FROM cpu WHERE",
            "error parsing query: found EOF, expected identifier, string, number, bool at line 1, char 28",
        ),
        (
            "'string'",
            "error parsing query: found string, expected SELECT, DELETE, SHOW, CREATE, DROP, EXPLAIN, GRANT, REVOKE, ALTER, SET, KILL at line 1, char 1",
        ),
        (
            "SELECT * FROM cpu WHERE value = 1 GROUP BY",
            "error parsing query: found EOF, expected identifier, string, number, bool at line 1, char 43",
        ),
    ];
    for (query, text) in cases {
        assert_eq!(err_text(query), text, "{query}");
    }
}

#[test]
fn garbage_input_gets_influxdb_style_errors() {
    let statements = "SELECT, DELETE, SHOW, CREATE, DROP, EXPLAIN, GRANT, REVOKE, ALTER, SET, KILL";
    let cases = [
        ("!!!", format!("found !, expected {statements} at line 1, char 1")),
        ("12345", format!("found 12345, expected {statements} at line 1, char 1")),
        ("  \n\t hello world", format!("found hello, expected {statements} at line 2, char 3")),
        ("()", format!("found (, expected {statements} at line 1, char 1")),
        (
            "SELECT * FROM cpu WHERE (((",
            "found EOF, expected identifier, string, number, bool at line 1, char 28".to_string(),
        ),
        ("SELECT * FROM cpu WHERE a = = 1", "found =, expected identifier, string, number, bool at line 1, char 29".to_string()),
        ("SELECT ,", "found ,, expected identifier, string, number, bool at line 1, char 8".to_string()),
        ("SELECT * FROM ;", "found ;, expected identifier at line 1, char 15".to_string()),
        ("SHOW", "found EOF, expected CONTINUOUS, DATABASES, DIAGNOSTICS, FIELD, GRANTS, MEASUREMENT, MEASUREMENTS, QUERIES, RETENTION, SERIES, SHARD, SHARDS, STATS, SUBSCRIPTIONS, TAG, USERS at line 1, char 5".to_string()),
    ];
    for (query, text) in cases {
        assert_eq!(
            err_text(query),
            format!("error parsing query: {text}"),
            "{query:?}"
        );
    }
}

#[test]
fn error_positions_count_lines_and_characters() {
    let e = parse_err("SELECT *\nFROM m\nWHERE @");
    assert_eq!((e.line, e.column, e.offset), (3, 7, 22));
    assert!(e.to_string().ends_with("at line 3, char 7"));
    // Characters, not bytes.
    let e = parse_err("SELECT \"é\" FROM m WHERE @");
    assert_eq!((e.line, e.column, e.offset), (1, 25, 25));
    let e = parse_err("SELECT a FROM m\r\nWHERE @");
    assert_eq!((e.line, e.column), (2, 7));
}

// ---- time ranges ------------------------------------------------------------------------------

fn range_of(condition: &str, now: i64) -> (Option<Expr>, TimeRange) {
    split_time_range(Some(&expr(condition)), now).unwrap_or_else(|e| panic!("{condition}: {e}"))
}

fn range_err(condition: &str) -> String {
    split_time_range(Some(&expr(condition)), 0)
        .expect_err(condition)
        .message
}

const JAN_1_2024: i64 = 1_704_067_200 * SECOND;

#[test]
fn time_range_comparisons() {
    let bounds = |c: &str| {
        let (rest, r) = range_of(c, 0);
        assert_eq!(rest, None, "{c}");
        (r.min_ns, r.max_ns)
    };
    assert_eq!(bounds("time > 100"), (Some(101), None));
    assert_eq!(bounds("time >= 100"), (Some(100), None));
    assert_eq!(bounds("time < 100"), (None, Some(99)));
    assert_eq!(bounds("time <= 100"), (None, Some(100)));
    assert_eq!(bounds("time = 100"), (Some(100), Some(100)));
    assert_eq!(bounds("100 < time"), (Some(101), None));
    assert_eq!(bounds("100 >= time"), (None, Some(100)));
    assert_eq!(bounds("TIME > 1"), (Some(2), None));
    assert_eq!(
        bounds("time > 5 AND time > 10 AND time < 20 AND time < 30"),
        (Some(11), Some(19))
    );
    assert_eq!(bounds("(time > 5 AND (time < 10))"), (Some(6), Some(9)));
    assert_eq!(bounds("time > 1.9"), (Some(2), None));
    assert_eq!(bounds("time > 10s"), (Some(10 * SECOND + 1), None));
    assert_eq!(
        bounds("time >= 1700000000000ms and time <= 1700003600000ms"),
        (
            Some(1_700_000_000_000_000_000),
            Some(1_700_003_600_000_000_000)
        )
    );
    let (_, r) = range_of("time > 10 AND time < 5", 0);
    assert!(r.is_empty());
    assert!(!r.contains(7));
    let (_, r) = range_of("time >= 10 AND time <= 20", 0);
    assert!(!r.is_empty() && r.contains(10) && r.contains(20) && !r.contains(21));
    assert_eq!(
        split_time_range(None, 0).unwrap(),
        (None, TimeRange::default())
    );
}

#[test]
fn time_range_literals() {
    let min = |c: &str, now: i64| range_of(c, now).1.min_ns.unwrap();
    let now = JAN_1_2024 + 12 * HOUR;
    assert_eq!(min("time >= now()", now), now);
    assert_eq!(min("time >= now() - 1h", now), now - HOUR);
    assert_eq!(min("time > now() - 1h", now), now - HOUR + 1);
    assert_eq!(
        min("time >= now() - 1h30m + 10s", now),
        now - 90 * MINUTE + 10 * SECOND
    );
    assert_eq!(min("time >= (now() - 2h)", now), now - 2 * HOUR);
    assert_eq!(min("time >= now() - 2 * 1h", now), now - 2 * HOUR);
    assert_eq!(min("time >= now() - 1000", now), now - 1000);
    assert_eq!(min("time >= '2024-01-01T00:00:00Z'", 0), JAN_1_2024);
    assert_eq!(min("time >= '2024-01-01'", 0), JAN_1_2024);
    assert_eq!(min("time >= '2024-01-01 00:00:00'", 0), JAN_1_2024);
    assert_eq!(
        min("time >= '2024-01-01 00:00:00.25'", 0),
        JAN_1_2024 + 250_000_000
    );
    assert_eq!(
        min("time >= '2024-01-01T00:00:00.123456789Z'", 0),
        JAN_1_2024 + 123_456_789
    );
    assert_eq!(min("time >= '2024-01-01T01:00:00+01:00'", 0), JAN_1_2024);
    assert_eq!(
        min("time >= '2024-01-01T00:00:00Z' + 10m", 0),
        JAN_1_2024 + 10 * MINUTE
    );
    assert_eq!(min("time >= '2024-01-01' - 1d", 0), JAN_1_2024 - 24 * HOUR);
    assert_eq!(min("'2024-01-01' <= time", 0), JAN_1_2024);
    assert_eq!(min("time >= '1970-01-01'", 0), 0);
    assert_eq!(
        parse_timestamp("2024-01-01T00:00:00Z"),
        Some(Ok(JAN_1_2024))
    );
    assert_eq!(parse_timestamp("not a date"), None);
}

#[test]
fn time_range_keeps_other_conditions() {
    let (rest, r) = range_of("host = 'a' AND time > 5", 0);
    assert_eq!(rest, Some(expr("host = 'a'")));
    assert_eq!(r.min_ns, Some(6));
    let (rest, _) = range_of("(host = 'a' OR host = 'b') AND time > 5", 0);
    assert_eq!(rest, Some(expr("host = 'a' OR host = 'b'")));
    let (rest, _) = range_of(
        "time > 5 AND (time < 10 AND host = 'a') AND region =~ /eu/",
        0,
    );
    assert_eq!(rest, Some(expr("(host = 'a') AND region =~ /eu/")));
    let (rest, _) = range_of("((time > 5))", 0);
    assert_eq!(rest, None);
    let (rest, r) = range_of("a = 1 OR b = 2", 0);
    assert_eq!(rest, Some(expr("a = 1 OR b = 2")));
    assert_eq!(r, TimeRange::default());
    let (rest, _) = range_of("true AND time > 1", 0);
    assert_eq!(rest, None);
    // Arithmetic on time is not a time bound.
    let (rest, r) = range_of("time + 1 > 5", 0);
    assert_eq!(rest, Some(expr("time + 1 > 5")));
    assert_eq!(r, TimeRange::default());
}

#[test]
fn time_range_errors() {
    assert_eq!(
        range_err("host = 'a' OR time > 5"),
        "cannot use OR with time conditions"
    );
    assert_eq!(
        range_err("(time > 1 AND a = 1) OR b = 2"),
        "cannot use OR with time conditions"
    );
    assert_eq!(
        range_err("a = 1 AND (b = 2 OR (time < 3))"),
        "cannot use OR with time conditions"
    );
    assert_eq!(
        range_err("time != 5"),
        "invalid time comparison operator: !="
    );
    assert_eq!(
        range_err("time =~ /5/"),
        "invalid time comparison operator: =~"
    );
    assert_eq!(
        range_err("time > 'abc'"),
        "invalid operation: time and 'abc' are not compatible"
    );
    assert_eq!(
        range_err("time > host"),
        "invalid operation: time and host are not compatible"
    );
    assert_eq!(
        range_err("time > '2024-13-45'"),
        "invalid timestamp string: \"2024-13-45\""
    );
    assert_eq!(
        range_err("time > '2024-01-01Tgarbage'"),
        "invalid timestamp string: \"2024-01-01Tgarbage\""
    );
    assert_eq!(
        range_err("time > '9999-01-01'"),
        "time \"9999-01-01\" overflows time literal"
    );
    assert_eq!(
        range_err("time > now() + 1000 * 15000w"),
        "time 1000 * 15000w is out of range"
    );
    assert_eq!(
        range_err("time > 9223372036854775807"),
        "time 9223372036854775807 is out of range"
    );
    assert_eq!(
        range_err("time > now() + now()"),
        "invalid time expression: now() + now()"
    );
    assert_eq!(
        range_err("time > 18446744073709551615"),
        "time 18446744073709551615 is out of range"
    );
    assert!(range_err("time > 1e300").ends_with("is out of range"));
}

// ---- column names -----------------------------------------------------------------------------

fn first_field(query: &str) -> Field {
    select(query).fields.remove(0)
}

#[test]
fn column_names_follow_influxdb() {
    let cases = [
        ("mean(value)", "mean"),
        ("MEAN(value)", "mean"),
        ("percentile(value, 90)", "percentile"),
        ("mean(a) * 100", "mean"),
        ("value", "value"),
        ("\"my field\"", "my field"),
        ("value::float", "value"),
        ("a + b", "a_b"),
        ("(a + b) * c", "a_b_c"),
        ("mean(a) + max(b)", "mean_max"),
        ("-value", "value"),
        ("(value)", "value"),
        ("(mean(x))", "mean"),
        ("count(distinct(host))", "count"),
        ("DISTINCT host", "distinct"),
        (
            "non_negative_derivative(mean(x), 1s)",
            "non_negative_derivative",
        ),
        ("1 + 2", ""),
        ("*", ""),
        ("/re/", ""),
        ("'lit'", ""),
        ("mean(x) AS avg", "avg"),
        ("a + b AS total", "total"),
    ];
    for (text, name) in cases {
        let f = first_field(&format!("SELECT {text} FROM m"));
        assert_eq!(column_name(&f), name, "{text}");
    }
}

#[test]
fn column_names_are_made_unique() {
    let names = |q: &str| column_names(&select(q).fields);
    assert_eq!(names("SELECT mean(a), mean(b) FROM m"), ["mean", "mean_1"]);
    assert_eq!(
        names("SELECT mean(a), mean(b), mean(c) FROM m"),
        ["mean", "mean_1", "mean_2"]
    );
    assert_eq!(
        names("SELECT mean(a) AS mean_1, mean(b), mean(c) FROM m"),
        ["mean_1", "mean", "mean_2"]
    );
    assert_eq!(names("SELECT a, a FROM m"), ["a", "a_1"]);
    assert_eq!(
        names("SELECT top(value, host, 3), max(x) FROM m"),
        ["top", "host", "max"]
    );
    assert_eq!(names("SELECT bottom(value, 3) FROM m"), ["bottom"]);
}

// ---- printing ---------------------------------------------------------------------------------

#[test]
fn display_matches_influxdb() {
    let cases = [
        (
            r#"SELECT mean("value") FROM "cpu" WHERE "host" = 'a' GROUP BY time(10s), "host" fill(null)"#,
            "SELECT mean(value) FROM cpu WHERE host = 'a' GROUP BY time(10s), host",
        ),
        (
            r#"SELECT "my field" AS "x y" FROM "my.measurement""#,
            r#"SELECT "my field" AS "x y" FROM "my.measurement""#,
        ),
        (
            "SELECT a FROM db..m, db.rp.m, rp.m",
            "SELECT a FROM db..m, db.rp.m, rp.m",
        ),
        (
            r#"SELECT "select", "a\"b" FROM m"#,
            r#"SELECT "select", "a\"b" FROM m"#,
        ),
        (
            "SELECT a FROM m WHERE time > now() - 1h30m",
            "SELECT a FROM m WHERE time > now() - 90m",
        ),
        (
            "SELECT a FROM m WHERE b <> 'it\\'s'",
            "SELECT a FROM m WHERE b != 'it\\'s'",
        ),
        (
            "SELECT 2.0, 1e3, -0.5, 7 FROM m",
            "SELECT 2.0, 1000.0, -0.5, 7 FROM m",
        ),
        ("SELECT -x, a / -b FROM m", "SELECT -1 * x, a / -b FROM m"),
        (
            "select MEAN(v) from m group by time(1h, -5m) fill(-1) order by time desc limit 5 offset 1 slimit 2 soffset 3 tz('UTC')",
            "SELECT mean(v) FROM m GROUP BY time(1h, -5m) fill(-1) ORDER BY time DESC LIMIT 5 OFFSET 1 SLIMIT 2 SOFFSET 3 tz('UTC')",
        ),
        (
            "SELECT v::tag, *::field FROM /c\\/x/",
            "SELECT v::tag, *::field FROM /c\\/x/",
        ),
        (
            "SELECT DISTINCT host FROM m",
            "SELECT distinct(host) FROM m",
        ),
        (
            r#"SHOW TAG VALUES ON "db" FROM "cpu" WITH KEY IN ("host", "r") WHERE a = 1 LIMIT 3"#,
            "SHOW TAG VALUES ON db FROM cpu WITH KEY IN (host, r) WHERE a = 1 LIMIT 3",
        ),
        (
            "SHOW MEASUREMENTS WITH MEASUREMENT =~ /cpu.*/ LIMIT 100",
            "SHOW MEASUREMENTS WITH MEASUREMENT =~ /cpu.*/ LIMIT 100",
        ),
        (
            "show series exact cardinality on db",
            "SHOW SERIES EXACT CARDINALITY ON db",
        ),
        ("show tag key cardinality", "SHOW TAG KEY CARDINALITY"),
        (
            "CREATE DATABASE db WITH DURATION INF REPLICATION 2 NAME \"rp 1\"",
            "CREATE DATABASE db WITH DURATION INF REPLICATION 2 NAME \"rp 1\"",
        ),
        (
            "DROP SERIES FROM \"m\" WHERE \"t\" = 'v'",
            "DROP SERIES FROM m WHERE t = 'v'",
        ),
        ("delete where time < 5", "DELETE WHERE time < 5"),
        ("show grants for bob", "SHOW GRANTS FOR bob"),
        ("show stats for 'x'", "SHOW STATS FOR 'x'"),
    ];
    for (query, printed) in cases {
        let statements = parse_ok(query);
        assert_eq!(statements[0].to_string(), printed, "{query}");
    }
    assert_eq!(quote_ident("plain_1"), "plain_1");
    assert_eq!(quote_ident("1abc"), "\"1abc\"");
    assert_eq!(quote_ident("time"), "time");
    assert_eq!(quote_ident("key"), "\"key\"");
    assert_eq!(quote_ident(""), "\"\"");
    assert_eq!(quote_ident("a\nb\\c\"d"), "\"a\\nb\\\\c\\\"d\"");
    assert_eq!(quote_string("it's\n"), "'it\\'s\\n'");
}

#[test]
fn printed_statements_parse_back_to_the_same_tree() {
    for query in VALID_QUERIES {
        assert_round_trip(query);
    }
    // Unary minus on the right of `/` keeps its meaning.
    assert_round_trip("SELECT a / -b, a % -(c + d), a * +b, 2 ^ -mean(x) FROM m");
    assert_round_trip("SELECT a FROM m WHERE x > -9223372036854775808 AND y < -1.5e300");
}

// ---- robustness -------------------------------------------------------------------------------

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = |open: &str, close: &str, n: usize| {
        format!(
            "SELECT a FROM m WHERE {}1{}",
            open.repeat(n),
            close.repeat(n)
        )
    };
    for query in [
        deep("(", ")", 100_000),
        deep("f(", ")", 100_000),
        deep("-(", ")", 100_000),
        deep("(-", "", 100_000),
        deep("((a + ", "))", 50_000),
    ] {
        let e = parse_err(&query);
        assert_eq!(e.kind, ParseErrorKind::TooDeep, "{}", &query[..40]);
    }
    // Nesting just under the limit parses.
    let query = deep("(", ")", MAX_NESTING - 2);
    parse_ok(&query);

    // A long flat chain builds a deep tree without recursion: bounded too.
    let chain = |n: usize| format!("SELECT a FROM m WHERE {}", vec!["a = 1"; n].join(" OR "));
    let e = parse_err(&chain(MAX_EXPR_DEPTH + 10));
    assert_eq!(e.kind, ParseErrorKind::TooDeep);
    let e = parse_err(&format!("SELECT {} FROM m", vec!["a"; 100_000].join(" + ")));
    assert_eq!(e.kind, ParseErrorKind::TooDeep);
}

#[test]
fn nesting_limit_fits_a_small_stack() {
    // Each pattern nests MAX_NESTING - 1 levels through a different recursive path. About
    // 4 KiB a level in a debug build (far less optimized): 1.5 MiB leaves a wide margin, and
    // a change that bloats the recursive functions' frames overflows here.
    let worker = std::thread::Builder::new()
        .stack_size(3 << 19)
        .spawn(|| {
            let patterns = [
                ("(", ")"),
                ("f(", ")"),
                ("-(", ")"),
                ("(-", ")"),
                ("((a + ", "))"),
                ("a + f(", ")"),
                ("(a =~ /x/ OR ", ")"),
            ];
            for (open, close) in patterns {
                let levels = (MAX_NESTING - 1) / open.matches(['(', '-']).count();
                let query = format!(
                    "SELECT a FROM m WHERE {}1{}",
                    open.repeat(levels),
                    close.repeat(levels)
                );
                assert!(parse_query(&query).is_ok(), "{open}");
                let query = format!(
                    "SELECT a FROM m WHERE {}1{}",
                    open.repeat(levels + 2),
                    close.repeat(levels + 2)
                );
                assert_eq!(parse_err(&query).kind, ParseErrorKind::TooDeep, "{open}");
            }
        })
        .unwrap();
    worker.join().unwrap();
}

#[test]
fn deepest_allowed_tree_can_be_used() {
    // The deepest accepted tree survives printing, cloning, time-range splitting and
    // dropping on a test thread's default stack.
    let n = MAX_EXPR_DEPTH / 2 - 1;
    let condition = format!("time > 5 AND {}", vec!["host = 'x'"; n].join(" AND "));
    let query = format!(
        "SELECT a + {} FROM m WHERE {condition}",
        vec!["b"; MAX_EXPR_DEPTH - 1].join(" + ")
    );
    let statements = parse_ok(&query);
    let Statement::Select(st) = &statements[0] else {
        panic!()
    };
    let printed = statements[0].to_string();
    assert_eq!(parse_ok(&printed), statements);
    let copy = st.clone();
    let (rest, range) = split_time_range(copy.condition.as_ref(), 0).unwrap();
    assert!(rest.is_some());
    assert_eq!(range.min_ns, Some(6));
    assert_eq!(column_name(&copy.fields[0]).len(), 2 * MAX_EXPR_DEPTH - 1);
    drop(copy);
}

#[test]
fn truncated_statements_never_panic() {
    for query in VALID_QUERIES {
        for (i, _) in query.char_indices() {
            let _ = parse_query(&query[..i]);
            let _ = parse_query(&query[i..]);
        }
    }
}

#[test]
fn lexer_handles_odd_input() {
    for query in [
        "\0",
        "SELECT \u{feff} FROM m",
        "SELECT a FROM m WHERE b = 'x\\",
        "SELECT \"x\\",
        "SELECT 1e FROM m",
        "SELECT 1e+ FROM m",
        "SELECT .e FROM m",
        "SELECT $ FROM m",
        "SELECT $\"x FROM m",
        "SELECT a::",
        "SELECT a:: FROM m",
        "SELECT * FROM m WHERE a =~ /x\\",
        "SELECT * FROM /x\\/",
        "SELECT µ FROM m",
        "SELECT 5µ FROM m",
        "SHOW MEASUREMENTS ON db.",
        "SELECT a FROM db../",
        "SELECT a FROM db..",
        "/*",
        "--",
        "-",
        "/",
        "SELECT a FROM m WHERE time > now() - -",
    ] {
        let _ = parse_query(query);
    }
}

/// Words and symbols to build random, mostly well-formed-looking queries from.
const SOUP: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP",
    "BY",
    "ORDER",
    "LIMIT",
    "OFFSET",
    "SLIMIT",
    "SOFFSET",
    "SHOW",
    "TAG",
    "KEYS",
    "VALUES",
    "KEY",
    "WITH",
    "MEASUREMENTS",
    "MEASUREMENT",
    "SERIES",
    "FIELD",
    "CARDINALITY",
    "EXACT",
    "ON",
    "IN",
    "AND",
    "OR",
    "AS",
    "DESC",
    "ASC",
    "DROP",
    "DELETE",
    "CREATE",
    "DATABASE",
    "DATABASES",
    "RETENTION",
    "POLICIES",
    "DISTINCT",
    "INTO",
    "time",
    "now()",
    "fill(null)",
    "fill(0)",
    "tz('UTC')",
    "mean",
    "count",
    "host",
    "\"a b\"",
    "value",
    "cpu",
    "db",
    "rp",
    "'str'",
    "'2024-01-01'",
    "1",
    "-1",
    "1.5",
    "1e3",
    "10s",
    "1h30m",
    "/re/",
    "/a\\/b/",
    "(",
    ")",
    ",",
    ";",
    ".",
    "..",
    "::",
    "::tag",
    "::field",
    "*",
    "+",
    "-",
    "/",
    "%",
    "&",
    "|",
    "^",
    "=",
    "!=",
    "<>",
    "<",
    "<=",
    ">",
    ">=",
    "=~",
    "!~",
    "true",
    "--",
    "/*",
    "*/",
    "$x",
    "@",
    "'",
    "\"",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_query(&text);
        let _ = parse_expr(&text);
    }

    #[test]
    fn random_text_never_panics(text in "\\PC{0,120}") {
        let _ = parse_query(&text);
    }

    #[test]
    fn token_soup_parses_or_errors_and_round_trips(
        words in proptest::collection::vec(proptest::sample::select(SOUP), 0..30),
        tight in any::<bool>(),
    ) {
        let text = words.join(if tight { "" } else { " " });
        if let Ok(statements) = parse_query(&text) {
            let printed: Vec<String> = statements.iter().map(|s| s.to_string()).collect();
            let again = parse_query(&printed.join("; "));
            prop_assert_eq!(Ok(statements), again, "{} printed as {:?}", text, printed);
        }
    }

    #[test]
    fn select_soup_round_trips(
        fields in proptest::collection::vec(proptest::sample::select(&[
            "a", "-a", "mean(a)", "a + b * c", "(a - b) / -c", "percentile(x, 95)", "*",
            "count(distinct(h))", "a::float", "1.5 % a", "a & 3 | b ^ 1", "-(a)", "+b", "5m",
            "'s'", "top(v, h, 2)", "/r.*/", "x AS \"y z\"",
        ][..]), 1..4),
        condition in proptest::sample::select(&[
            "", "WHERE a = 1", "WHERE time > now() - 1h AND (h =~ /x/ OR h !~ /y/)",
            "WHERE a <> 'q' AND b >= -2.5 OR NOT_A_KEYWORD < 3",
            "WHERE time >= '2024-01-01' AND time <= '2024-01-02T00:00:00Z' + 1h",
        ][..]),
        tail in proptest::sample::select(&[
            "", "GROUP BY time(1m)", "GROUP BY time(1m, -30s), host fill(previous)",
            "GROUP BY * fill(-3) ORDER BY time DESC LIMIT 3", "SLIMIT 1 SOFFSET 2 tz('UTC')",
        ][..]),
    ) {
        let text = format!("SELECT {} FROM m {condition} {tail}", fields.join(", "));
        let statements = parse_query(&text);
        prop_assert!(statements.is_ok(), "{}: {:?}", text, statements);
        let statements = statements.unwrap_or_default();
        let printed = statements[0].to_string();
        prop_assert_eq!(Ok(statements), parse_query(&printed), "{}", printed);
    }
}
