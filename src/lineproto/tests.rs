//! Unit and property tests for the line protocol parser.
//!
//! Sources of the cases (facts only, re-expressed here):
//! * InfluxDB 1.x/2.x Go parser tests, `influxdata/influxdb` `models/points_test.go` ("Go").
//! * InfluxDB 3 / IOx Rust parser tests, `influxdb_line_protocol/src/lib.rs` ("IOx").
//! * `influxdata/line-protocol`: reference EBNF and corpus inputs ("EBNF", "corpus").
//! * InfluxDB v2 line protocol reference documentation ("docs").

use std::borrow::Cow;

use proptest::prelude::*;

use super::{
    FieldValue, LineItem, MAX_STRING_FIELD_LEN, MAX_TOKEN_LEN, ParseErrorKind, ParsedLine, lines,
    parse_line, write_line,
};

// ---------------------------------------------------------------------------------------------
// Helpers

fn f(v: f64) -> FieldValue<'static> {
    FieldValue::Float(v)
}
fn i(v: i64) -> FieldValue<'static> {
    FieldValue::Integer(v)
}
fn u(v: u64) -> FieldValue<'static> {
    FieldValue::UInteger(v)
}
fn s(v: &str) -> FieldValue<'_> {
    FieldValue::String(Cow::Borrowed(v))
}
fn b(v: bool) -> FieldValue<'static> {
    FieldValue::Boolean(v)
}

fn pl<'a>(
    measurement: &'a str,
    tags: &[(&'a str, &'a str)],
    fields: Vec<(&'a str, FieldValue<'a>)>,
    timestamp: Option<i64>,
) -> ParsedLine<'a> {
    ParsedLine {
        measurement: Cow::Borrowed(measurement),
        tags: tags
            .iter()
            .map(|&(k, v)| (Cow::Borrowed(k), Cow::Borrowed(v)))
            .collect(),
        fields: fields
            .into_iter()
            .map(|(k, v)| (Cow::Borrowed(k), v))
            .collect(),
        timestamp,
    }
}

fn parse_ok(input: &str) -> ParsedLine<'_> {
    match parse_line(input.as_bytes()) {
        Ok(line) => line,
        Err(e) => panic!("{input:?} should parse, got error: {e}"),
    }
}

fn parse_err(input: &[u8]) -> super::ParseError {
    match parse_line(input) {
        Ok(line) => panic!(
            "{:?} should fail, got {line:?}",
            String::from_utf8_lossy(input)
        ),
        Err(e) => e,
    }
}

fn to_lp(line: &ParsedLine<'_>) -> String {
    let mut out = String::new();
    write_line(line, &mut out);
    out
}

// ---------------------------------------------------------------------------------------------
// Valid lines with exact expected values

fn valid_cases() -> Vec<(String, ParsedLine<'static>)> {
    let max_float = format!("17976931348623157{}.0", "0".repeat(292));
    let max_float_zeros = format!("0000{max_float}");
    let min_float = format!("-{max_float}");
    let min_float_zeros = format!("-0000000{max_float}");
    let mut cases: Vec<(String, ParsedLine<'static>)> = vec![
        // --- basics (Go TestParsePointNoTimestamp, TestParsePointWithTags; IOx parse_single_*)
        ("cpu value=1".into(), pl("cpu", &[], vec![("value", f(1.0))], None)),
        (
            "cpu,host=serverA,region=us-east value=1.0 1000000000".into(),
            pl(
                "cpu",
                &[("host", "serverA"), ("region", "us-east")],
                vec![("value", f(1.0))],
                Some(1_000_000_000),
            ),
        ),
        ("foo asdf=23i 1234".into(), pl("foo", &[], vec![("asdf", i(23))], Some(1234))),
        ("foo asdf=23u 1234".into(), pl("foo", &[], vec![("asdf", u(23))], Some(1234))),
        ("foo asdf=44 546".into(), pl("foo", &[], vec![("asdf", f(44.0))], Some(546))),
        ("foo asdf=3.74 123".into(), pl("foo", &[], vec![("asdf", f(3.74))], Some(123))),
        (
            r#"foo asdf="the string value" 1234"#.into(),
            pl("foo", &[], vec![("asdf", s("the string value"))], Some(1234)),
        ),
        ("foo asdf=true 1234".into(), pl("foo", &[], vec![("asdf", b(true))], Some(1234))),
        (
            r#"foo asdf=23.1,bar=-5i,qux=9u,baz="the string",frab=false 1234"#.into(),
            pl(
                "foo",
                &[],
                vec![
                    ("asdf", f(23.1)),
                    ("bar", i(-5)),
                    ("qux", u(9)),
                    ("baz", s("the string")),
                    ("frab", b(false)),
                ],
                Some(1234),
            ),
        ),
        (
            "foo,tag0=value1 asdf=23.1,bar=5i".into(),
            pl("foo", &[("tag0", "value1")], vec![("asdf", f(23.1)), ("bar", i(5))], None),
        ),
        ("m0 field=-1i 99".into(), pl("m0", &[], vec![("field", i(-1))], Some(99))),
        ("m0 field2=-1 99".into(), pl("m0", &[], vec![("field2", f(-1.0))], Some(99))),
        (
            "m v=42i,f=42,g=42.314,u=123u".into(),
            pl("m", &[], vec![("v", i(42)), ("f", f(42.0)), ("g", f(42.314)), ("u", u(123))], None),
        ),
        (
            r#"m a=2i,b=3i,c=true,d="stuff",e=-0.23,f=123.456"#.into(),
            pl(
                "m",
                &[],
                vec![
                    ("a", i(2)),
                    ("b", i(3)),
                    ("c", b(true)),
                    ("d", s("stuff")),
                    ("e", f(-0.23)),
                    ("f", f(123.456)),
                ],
                None,
            ),
        ),
        // --- floats (Go TestParsePointFloat*, TestNewPoint*; IOx parse_scientific_float; EBNF)
        (
            "m0 field=-1.234456e+06 1615869152385000000".into(),
            pl("m0", &[], vec![("field", f(-1.234456e+06))], Some(1_615_869_152_385_000_000)),
        ),
        (
            "m0 field=-1.234456E+3 1615869152385000000".into(),
            pl("m0", &[], vec![("field", f(-1.234456E+3))], Some(1_615_869_152_385_000_000)),
        ),
        ("m0 field=1.234456E+16".into(), pl("m0", &[], vec![("field", f(1.234456E+16))], None)),
        ("m0 field=1.234456E-16".into(), pl("m0", &[], vec![("field", f(1.234456E-16))], None)),
        ("m0 field=1.234456e-03".into(), pl("m0", &[], vec![("field", f(1.234456e-03))], None)),
        ("m0 field=1e-0".into(), pl("m0", &[], vec![("field", f(1.0))], None)),
        ("m0 field=-1e-0".into(), pl("m0", &[], vec![("field", f(-1.0))], None)),
        ("m0 field=1.234456e06".into(), pl("m0", &[], vec![("field", f(1.234456e06))], None)),
        ("m0 field=-1.234456E06".into(), pl("m0", &[], vec![("field", f(-1.234456e06))], None)),
        ("cpu value=1.0e4".into(), pl("cpu", &[], vec![("value", f(1e4))], None)),
        ("cpu value=1E4".into(), pl("cpu", &[], vec![("value", f(1e4))], None)),
        ("cpu value=-1.0e-4".into(), pl("cpu", &[], vec![("value", f(-1.0e-4))], None)),
        ("cpu value=1. 1000000000".into(), pl("cpu", &[], vec![("value", f(1.0))], Some(1_000_000_000))),
        ("cpu value=.1".into(), pl("cpu", &[], vec![("value", f(0.1))], None)),
        ("cpu value=-.5".into(), pl("cpu", &[], vec![("value", f(-0.5))], None)),
        ("cpu value=1.e5".into(), pl("cpu", &[], vec![("value", f(1e5))], None)),
        ("cpu value=-0".into(), pl("cpu", &[], vec![("value", f(-0.0))], None)),
        (
            "cpu value=6.632243e+06 1000000000".into(),
            pl("cpu", &[], vec![("value", f(6_632_243.0))], Some(1_000_000_000)),
        ),
        (
            "cpu value=-0.64 1000000000".into(),
            pl("cpu", &[], vec![("value", f(-0.64))], Some(1_000_000_000)),
        ),
        (
            "myMeasurement fieldKey=-1.234456e+78".into(),
            pl("myMeasurement", &[], vec![("fieldKey", f(-1.234456e+78))], None),
        ),
        (format!("cpu value={max_float}"), pl("cpu", &[], vec![("value", f(f64::MAX))], None)),
        (format!("cpu value={max_float_zeros}"), pl("cpu", &[], vec![("value", f(f64::MAX))], None)),
        (format!("cpu value={min_float}"), pl("cpu", &[], vec![("value", f(f64::MIN))], None)),
        (format!("cpu value={min_float_zeros}"), pl("cpu", &[], vec![("value", f(f64::MIN))], None)),
        ("cpu value=1e-400".into(), pl("cpu", &[], vec![("value", f(0.0))], None)),
        // --- integers and unsigned (Go TestParsePointMaxInt64 .. TestParsePointMinUint64)
        (
            "cpu value=6632243i 1000000000".into(),
            pl("cpu", &[], vec![("value", i(6_632_243))], Some(1_000_000_000)),
        ),
        ("cpu value=9223372036854775807i".into(), pl("cpu", &[], vec![("value", i(i64::MAX))], None)),
        ("cpu value=-9223372036854775808i".into(), pl("cpu", &[], vec![("value", i(i64::MIN))], None)),
        ("cpu value=0009223372036854775807i".into(), pl("cpu", &[], vec![("value", i(i64::MAX))], None)),
        ("cpu value=-0009223372036854775808i".into(), pl("cpu", &[], vec![("value", i(i64::MIN))], None)),
        ("cpu value=-0i".into(), pl("cpu", &[], vec![("value", i(0))], None)),
        ("cpu value=18446744073709551615u".into(), pl("cpu", &[], vec![("value", u(u64::MAX))], None)),
        ("cpu value=00018446744073709551615u".into(), pl("cpu", &[], vec![("value", u(u64::MAX))], None)),
        ("cpu value=0u".into(), pl("cpu", &[], vec![("value", u(0))], None)),
        ("cpu value=0000u".into(), pl("cpu", &[], vec![("value", u(0))], None)),
        // --- booleans (Go TestParsePointWithBoolField; IOx parse_bool_values; docs)
        (
            "cpu,host=serverA,region=us-east true=true,t=t,T=T,TRUE=TRUE,True=True,false=false,f=f,F=F,FALSE=FALSE,False=False 1000000000".into(),
            pl(
                "cpu",
                &[("host", "serverA"), ("region", "us-east")],
                vec![
                    ("true", b(true)),
                    ("t", b(true)),
                    ("T", b(true)),
                    ("TRUE", b(true)),
                    ("True", b(true)),
                    ("false", b(false)),
                    ("f", b(false)),
                    ("F", b(false)),
                    ("FALSE", b(false)),
                    ("False", b(false)),
                ],
                Some(1_000_000_000),
            ),
        ),
        // --- strings (Go TestParsePointWithString*, TestParsePointEscapedStringsAndCommas)
        (
            r#"cpu,host=serverA,region=us-east value=1.0,str="foo",str2="bar" 1000000000"#.into(),
            pl(
                "cpu",
                &[("host", "serverA"), ("region", "us-east")],
                vec![("value", f(1.0)), ("str", s("foo")), ("str2", s("bar"))],
                Some(1_000_000_000),
            ),
        ),
        (
            r#"cpu,host=serverA,region=us-east str="foo \" bar" 1000000000"#.into(),
            pl("cpu", &[("host", "serverA"), ("region", "us-east")], vec![("str", s(r#"foo " bar"#))], Some(1_000_000_000)),
        ),
        (
            r#"cpu,host=serverA,region=us-east value=1.0,str="foo bar" 1000000000"#.into(),
            pl("cpu", &[("host", "serverA"), ("region", "us-east")], vec![("value", f(1.0)), ("str", s("foo bar"))], Some(1_000_000_000)),
        ),
        (
            r#"cpu,host=serverA,region=us-east value=1.0,str="foo\,bar" 1000000000"#.into(),
            pl("cpu", &[("host", "serverA"), ("region", "us-east")], vec![("value", f(1.0)), ("str", s(r"foo\,bar"))], Some(1_000_000_000)),
        ),
        (
            r#"cpu,host=serverA,region=us-east value=1.0,str="foo,bar" 1000000000"#.into(),
            pl("cpu", &[("host", "serverA"), ("region", "us-east")], vec![("value", f(1.0)), ("str", s("foo,bar"))], Some(1_000_000_000)),
        ),
        (
            r#"cpu,host=serverA,region=us-east str="foo\\",str2="bar" 1000000000"#.into(),
            pl("cpu", &[("host", "serverA"), ("region", "us-east")], vec![("str", s("foo\\")), ("str2", s("bar"))], Some(1_000_000_000)),
        ),
        (
            r#"cpu,host=serverA,region=us-east value="{Hello\"{,}\" World}" 1000000000"#.into(),
            pl("cpu", &[("host", "serverA"), ("region", "us-east")], vec![("value", s(r#"{Hello"{,}" World}"#))], Some(1_000_000_000)),
        ),
        (
            r#"cpu,host=serverA,region=us-east value="{Hello\"{\,}\" World}" 1000000000"#.into(),
            pl("cpu", &[("host", "serverA"), ("region", "us-east")], vec![("value", s(r#"{Hello"{\,}" World}"#))], Some(1_000_000_000)),
        ),
        (
            r#"cpu,host=serverA,region=us-east str="foo=bar",value=1.0 1000000000"#.into(),
            pl("cpu", &[("host", "serverA"), ("region", "us-east")], vec![("str", s("foo=bar")), ("value", f(1.0))], Some(1_000_000_000)),
        ),
        (r#"cpu value="test\\\"" 1000000000"#.into(), pl("cpu", &[], vec![("value", s(r#"test\""#))], Some(1_000_000_000))),
        (r#"cpu value="test\\" 1000000000"#.into(), pl("cpu", &[], vec![("value", s(r"test\"))], Some(1_000_000_000))),
        (r#"cpu value="test\"" 1000000000"#.into(), pl("cpu", &[], vec![("value", s(r#"test""#))], Some(1_000_000_000))),
        (r#"cpu value="wè" 1000000000"#.into(), pl("cpu", &[], vec![("value", s("wè"))], Some(1_000_000_000))),
        (r#"m v="string\"with\"escapes""#.into(), pl("m", &[], vec![("v", s(r#"string"with"escapes"#))], None)),
        (
            "cpu,host=serverA,region=us-east value=1.0,str=\"foo\nbar\" 1000000000".into(),
            pl("cpu", &[("host", "serverA"), ("region", "us-east")], vec![("value", f(1.0)), ("str", s("foo\nbar"))], Some(1_000_000_000)),
        ),
        // IOx parse_string_values (from the v1.8 docs' special-characters examples)
        (r#"foo asdf="""#.into(), pl("foo", &[], vec![("asdf", s(""))], None)),
        (r#"foo asdf="str val""#.into(), pl("foo", &[], vec![("asdf", s("str val"))], None)),
        (r#"foo asdf="The \"string\" val""#.into(), pl("foo", &[], vec![("asdf", s(r#"The "string" val"#))], None)),
        (r#"foo asdf="too hot/cold""#.into(), pl("foo", &[], vec![("asdf", s("too hot/cold"))], None)),
        (r#"foo asdf="too hot\cold""#.into(), pl("foo", &[], vec![("asdf", s(r"too hot\cold"))], None)),
        (r#"foo asdf="too hot\\cold""#.into(), pl("foo", &[], vec![("asdf", s(r"too hot\cold"))], None)),
        (r#"foo asdf="too hot\\\cold""#.into(), pl("foo", &[], vec![("asdf", s(r"too hot\\cold"))], None)),
        (r#"foo asdf="too hot\\\\cold""#.into(), pl("foo", &[], vec![("asdf", s(r"too hot\\cold"))], None)),
        (r#"foo asdf="too hot\\\\\cold""#.into(), pl("foo", &[], vec![("asdf", s(r"too hot\\\cold"))], None)),
        (r#"foo asdf="too hot\\\\\\cold""#.into(), pl("foo", &[], vec![("asdf", s(r"too hot\\\cold"))], None)),
        // backslash-n/r/t in strings are NOT escapes (corpus "backslash-n in string field")
        (r#"m v="\n""#.into(), pl("m", &[], vec![("v", s(r"\n"))], None)),
        (r#"m v="\r\t""#.into(), pl("m", &[], vec![("v", s(r"\r\t"))], None)),
        // control characters are fine inside string values (IOx parse_where_nulls_accepted)
        ("m,tag1=one,tag2=2 value=\"v\0\" 123".into(), pl("m", &[("tag1", "one"), ("tag2", "2")], vec![("value", s("v\0"))], Some(123))),
        ("m v=\"a\tb\"".into(), pl("m", &[], vec![("v", s("a\tb"))], None)),
        // --- escapes in names (Go TestParsePointUnescape, TestPoint_Tags)
        (r"foo\,bar value=1i".into(), pl("foo,bar", &[], vec![("value", i(1))], None)),
        (r"cpu\,main,regions=east value=1.0".into(), pl("cpu,main", &[("regions", "east")], vec![("value", f(1.0))], None)),
        (r"cpu\ load,region=east value=1.0".into(), pl("cpu load", &[("region", "east")], vec![("value", f(1.0))], None)),
        (r"cpu\=load,region=east value=1.0".into(), pl(r"cpu\=load", &[("region", "east")], vec![("value", f(1.0))], None)),
        ("cpu=load,region=east value=1.0".into(), pl("cpu=load", &[("region", "east")], vec![("value", f(1.0))], None)),
        (r"cpu,region\,zone=east value=1.0".into(), pl("cpu", &[("region,zone", "east")], vec![("value", f(1.0))], None)),
        (r"cpu,region\ zone=east value=1.0".into(), pl("cpu", &[("region zone", "east")], vec![("value", f(1.0))], None)),
        (r"cpu,reg\\=ion=east value=1.0".into(), pl("cpu", &[(r"reg\=ion", "east")], vec![("value", f(1.0))], None)),
        (r"cpu,\ =east value=1.0".into(), pl("cpu", &[(" ", "east")], vec![("value", f(1.0))], None)),
        (r"cpu,regions=east\,west value=1.0".into(), pl("cpu", &[("regions", "east,west")], vec![("value", f(1.0))], None)),
        (r"cpu,regions=\\ east value=1.0".into(), pl("cpu", &[("regions", r"\ east")], vec![("value", f(1.0))], None)),
        (r"cpu,regions=eas\\ t value=1.0".into(), pl("cpu", &[("regions", r"eas\ t")], vec![("value", f(1.0))], None)),
        (r"cpu,regions=east\\  value=1.0".into(), pl("cpu", &[("regions", r"east\ ")], vec![("value", f(1.0))], None)),
        (r"cpu,regions=east\ west value=1.0".into(), pl("cpu", &[("regions", "east west")], vec![("value", f(1.0))], None)),
        (r"cpu,regions=east value\,ms=1.0".into(), pl("cpu", &[("regions", "east")], vec![("value,ms", f(1.0))], None)),
        (r"cpu,regions=east value\ ms=1.0".into(), pl("cpu", &[("regions", "east")], vec![("value ms", f(1.0))], None)),
        (r#"cpu,regions=east value="1,0""#.into(), pl("cpu", &[("regions", "east")], vec![("value", s("1,0"))], None)),
        (r"cpu,regions=eas\t value=1.0".into(), pl("cpu", &[("regions", r"eas\t")], vec![("value", f(1.0))], None)),
        (r"cpu,regions=\\,\,\=east value=1.0".into(), pl("cpu", &[("regions", r"\,,=east")], vec![("value", f(1.0))], None)),
        (r"cpu \a=1i".into(), pl("cpu", &[], vec![(r"\a", i(1))], None)),
        (r"cpu=load,equals\=foo=tag\=value value=1i".into(), pl("cpu=load", &[("equals=foo", "tag=value")], vec![("value", i(1))], None)),
        (r"cpu,tag0=v\ 0 value=1".into(), pl("cpu", &[("tag0", "v 0")], vec![("value", f(1.0))], None)),
        (r"cpu,tag0=v\ 0\ 1,tag1=v2 value=1".into(), pl("cpu", &[("tag0", "v 0 1"), ("tag1", "v2")], vec![("value", f(1.0))], None)),
        (r"cpu,tag0=\, value=1".into(), pl("cpu", &[("tag0", ",")], vec![("value", f(1.0))], None)),
        (r"cpu,ta\ g0=\, value=1".into(), pl("cpu", &[("ta g0", ",")], vec![("value", f(1.0))], None)),
        (r"cpu,tag0=\,1 value=1".into(), pl("cpu", &[("tag0", ",1")], vec![("value", f(1.0))], None)),
        (r#"cpu,tag0=1\"\",t=k value=1"#.into(), pl("cpu", &[("tag0", r#"1\"\""#), ("t", "k")], vec![("value", f(1.0))], None)),
        (r"m\ q,k\ q=v f=1".into(), pl("m q", &[("k q", "v")], vec![("f", f(1.0))], None)),
        (r"cpu,host=serverA,\ =us-east value=1i".into(), pl("cpu", &[("host", "serverA"), (" ", "us-east")], vec![("value", i(1))], None)),
        (r"cpu,host=serverA,region=us-west a\ =123i".into(), pl("cpu", &[("host", "serverA"), ("region", "us-west")], vec![("a ", i(123))], None)),
        (r"\wea\ther f=1".into(), pl(r"\wea\ther", &[], vec![("f", f(1.0))], None)),
        (r"\#hash f=1".into(), pl(r"\#hash", &[], vec![("f", f(1.0))], None)),
        // --- '=' and quotes in names (Go TestPoint_EqPattern_Measurement, TestParsePointQuoted*)
        ("measurement=withEq,tag0=v0 value=1".into(), pl("measurement=withEq", &[("tag0", "v0")], vec![("value", f(1.0))], None)),
        ("tag0=v0 value=1".into(), pl("tag0=v0", &[], vec![("value", f(1.0))], None)),
        ("tag1=1,tag2=2 value=1 123".into(), pl("tag1=1", &[("tag2", "2")], vec![("value", f(1.0))], Some(123))),
        (
            r#""cpu",host=serverA,region=us-east value=1.0 1000000000"#.into(),
            pl(r#""cpu""#, &[("host", "serverA"), ("region", "us-east")], vec![("value", f(1.0))], Some(1_000_000_000)),
        ),
        (
            r#"cpu,"host"="serverA",region=us-east value=1.0 1000000000"#.into(),
            pl("cpu", &[(r#""host""#, r#""serverA""#), ("region", "us-east")], vec![("value", f(1.0))], Some(1_000_000_000)),
        ),
        (r#"cpu "a=1"#.into(), pl("cpu", &[], vec![(r#""a"#, f(1.0))], None)),
        (r#"t159,label=hey\ "ya a=1i,value=0i"#.into(), pl("t159", &[("label", r#"hey "ya"#)], vec![("a", i(1)), ("value", i(0))], None)),
        (r#"baz,mytag="a x=1 1441103862125"#.into(), pl("baz", &[("mytag", r#""a"#)], vec![("x", f(1.0))], Some(1_441_103_862_125))),
        // --- timestamps (Go TestParsePointNegativeTimestamp, Max/MinTimestamp; IOx)
        ("cpu value=1 -1".into(), pl("cpu", &[], vec![("value", f(1.0))], Some(-1))),
        ("foo value1=1i -123".into(), pl("foo", &[], vec![("value1", i(1))], Some(-123))),
        ("cpu value=1 9223372036854775806".into(), pl("cpu", &[], vec![("value", f(1.0))], Some(9_223_372_036_854_775_806))),
        ("cpu value=1 -9223372036854775806".into(), pl("cpu", &[], vec![("value", f(1.0))], Some(-9_223_372_036_854_775_806))),
        ("cpu value=1 9223372036854775807".into(), pl("cpu", &[], vec![("value", f(1.0))], Some(i64::MAX))),
        ("cpu value=1 -9223372036854775808".into(), pl("cpu", &[], vec![("value", f(1.0))], Some(i64::MIN))),
        ("cpu value=1 0".into(), pl("cpu", &[], vec![("value", f(1.0))], Some(0))),
        ("cpu value=1 000123".into(), pl("cpu", &[], vec![("value", f(1.0))], Some(123))),
        // --- whitespace (Go TestParsePointWhitespace; IOx parse_multiple_whitespace_...)
        ("cpu    value=1.0 1257894000000000000".into(), pl("cpu", &[], vec![("value", f(1.0))], Some(1_257_894_000_000_000_000))),
        ("cpu value=1.0     1257894000000000000".into(), pl("cpu", &[], vec![("value", f(1.0))], Some(1_257_894_000_000_000_000))),
        ("cpu      value=1.0     1257894000000000000".into(), pl("cpu", &[], vec![("value", f(1.0))], Some(1_257_894_000_000_000_000))),
        ("cpu value=1.0 1257894000000000000   ".into(), pl("cpu", &[], vec![("value", f(1.0))], Some(1_257_894_000_000_000_000))),
        ("  measurement  a=1i  123  ".into(), pl("measurement", &[], vec![("a", i(1))], Some(123))),
        ("\t cpu value=1".into(), pl("cpu", &[], vec![("value", f(1.0))], None)),
        ("cpu value=1   ".into(), pl("cpu", &[], vec![("value", f(1.0))], None)),
        ("cpu,a=b  value=1".into(), pl("cpu", &[("a", "b")], vec![("value", f(1.0))], None)),
        // --- duplicate field keys: last value wins at first position
        ("m a=1i,b=2i,a=3i".into(), pl("m", &[], vec![("a", i(3)), ("b", i(2))], None)),
        (r#"m a=1i,b="x",a=true,b=2u"#.into(), pl("m", &[], vec![("a", b(true)), ("b", u(2))], None)),
        // --- docs examples
        (
            "myMeasurement,tagKey=🍭 fieldKey=\"Launch 🚀\" 1556813561098000000".into(),
            pl("myMeasurement", &[("tagKey", "🍭")], vec![("fieldKey", s("Launch 🚀"))], Some(1_556_813_561_098_000_000)),
        ),
        (r#"my\ Measurement fieldKey="string value""#.into(), pl("my Measurement", &[], vec![("fieldKey", s("string value"))], None)),
        (
            r#"myMeasurement fieldKey="\"string\" within a string""#.into(),
            pl("myMeasurement", &[], vec![("fieldKey", s(r#""string" within a string"#))], None),
        ),
        (
            r"myMeasurement,tag\ Key1=tag\ Value1,tag\ Key2=tag\ Value2 fieldKey=100".into(),
            pl("myMeasurement", &[("tag Key1", "tag Value1"), ("tag Key2", "tag Value2")], vec![("fieldKey", f(100.0))], None),
        ),
        ("m,k=é\u{a0}x v=1".into(), pl("m", &[("k", "é\u{a0}x")], vec![("v", f(1.0))], None)),
        // --- TSBS-like line
        (
            "cpu,hostname=host_12,region=eu-west-1,datacenter=eu-west-1a,rack=23,os=Ubuntu16.10,arch=x64,team=SF,service=9,service_version=1,service_environment=staging usage_user=58i,usage_system=2i,usage_idle=24i,usage_nice=61i,usage_iowait=22i,usage_irq=63i,usage_softirq=6i,usage_steal=44i,usage_guest=80i,usage_guest_nice=38i 1451606400000000000".into(),
            pl(
                "cpu",
                &[
                    ("hostname", "host_12"),
                    ("region", "eu-west-1"),
                    ("datacenter", "eu-west-1a"),
                    ("rack", "23"),
                    ("os", "Ubuntu16.10"),
                    ("arch", "x64"),
                    ("team", "SF"),
                    ("service", "9"),
                    ("service_version", "1"),
                    ("service_environment", "staging"),
                ],
                vec![
                    ("usage_user", i(58)),
                    ("usage_system", i(2)),
                    ("usage_idle", i(24)),
                    ("usage_nice", i(61)),
                    ("usage_iowait", i(22)),
                    ("usage_irq", i(63)),
                    ("usage_softirq", i(6)),
                    ("usage_steal", i(44)),
                    ("usage_guest", i(80)),
                    ("usage_guest_nice", i(38)),
                ],
                Some(1_451_606_400_000_000_000),
            ),
        ),
    ];
    // Quoted string containing every special character.
    cases.push((
        r#"m s="a,b c=d\\e\"f""#.into(),
        pl("m", &[], vec![("s", s(r#"a,b c=d\e"f"#))], None),
    ));
    cases
}

#[test]
fn valid_lines_parse_to_exact_values() {
    let cases = valid_cases();
    assert!(cases.len() >= 130, "only {} valid cases", cases.len());
    for (input, expected) in &cases {
        let got = parse_ok(input);
        assert_eq!(&got, expected, "input: {input:?}");
        // Floats must be bit-identical (PartialEq treats 0.0 == -0.0).
        for ((_, gv), (_, ev)) in got.fields.iter().zip(&expected.fields) {
            if let (FieldValue::Float(g), FieldValue::Float(e)) = (gv, ev) {
                assert_eq!(g.to_bits(), e.to_bits(), "input: {input:?}");
            }
        }
    }
}

#[test]
fn valid_lines_round_trip_through_writer() {
    for (input, expected) in &valid_cases() {
        let written = to_lp(expected);
        let reparsed = match parse_line(written.as_bytes()) {
            Ok(l) => l,
            Err(e) => panic!("rewrite of {input:?} = {written:?} failed: {e}"),
        };
        assert_eq!(
            &reparsed, expected,
            "input {input:?} written as {written:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Invalid lines

fn invalid_cases() -> Vec<(Vec<u8>, ParseErrorKind)> {
    use ParseErrorKind as K;
    let max_float = format!("17976931348623157{}.0", "0".repeat(292));
    let mut cases: Vec<(Vec<u8>, ParseErrorKind)> = Vec::new();
    let mut add = |input: &str, kind: ParseErrorKind| cases.push((input.as_bytes().to_vec(), kind));

    // blank / comment (parse_line only)
    add("", K::EmptyLine);
    add("   ", K::EmptyLine);
    add(" \t ", K::EmptyLine);
    add("# comment", K::CommentLine);
    add("  # indented comment", K::CommentLine);
    add("#cpu value=1", K::CommentLine);
    // no fields (Go TestParsePointNoFields; IOx parse_no_fields, better_error_messages)
    add(
        "cpu_load_short,host=server01,region=us-west",
        K::MissingFields,
    );
    add("cpu", K::MissingFields);
    add("measurement", K::MissingFields);
    add("=", K::MissingFields);
    add("cpu ", K::MissingFields);
    add("cpu,host=a   ", K::MissingFields);
    add("cpu,host==", K::MissingTagValue);
    add("foo 1234", K::MissingFieldValue);
    add("field=1 1234", K::MissingFieldValue);
    add("m\u{a0}v=1", K::MissingFields);
    // missing measurement (Go TestPoint_Nulls; IOx parse_no_measurement)
    add(",tag1=1,tag2=2 value=1 123", K::MissingMeasurement);
    add(",", K::MissingMeasurement);
    // missing tag key (Go TestParsePointMissingTagKey; IOx)
    add("cpu, value=1", K::MissingTagKey);
    add("cpu,", K::MissingTagKey);
    add("cpu,,,", K::MissingTagKey);
    add("cpu,host=serverA,=us-east value=1i", K::MissingTagKey);
    add(r"cpu,host=serverAa\,,=us-east value=1i", K::MissingTagKey);
    add(r"cpu,host=serverA\,,=us-east value=1i", K::MissingTagKey);
    add("cpu, =serverA value=1i", K::MissingTagKey);
    add("J,", K::MissingTagKey);
    add("0,,=", K::MissingTagKey);
    add("testmeasure, bar=1i", K::MissingTagKey);
    add("cpu,t=v, f=1", K::MissingTagKey);
    add("cpu,t=v,", K::MissingTagKey);
    // missing tag value (Go TestParsePointMissingTagValue; IOx)
    add("cpu,host", K::MissingTagValue);
    add("cpu,host,", K::MissingTagValue);
    add("cpu,host=", K::MissingTagValue);
    add("cpu,host value=1i", K::MissingTagValue);
    add("cpu,host=serverA,region value=1i", K::MissingTagValue);
    add("cpu,host=serverA,region= value=1i", K::MissingTagValue);
    add(
        "cpu,host=serverA,region=,zone=us-west value=1i",
        K::MissingTagValue,
    );
    add("J,#", K::MissingTagValue);
    add(r"testmeasure,foo\=\,baz= bar=1i", K::MissingTagValue);
    add("testmeasure,foo=,baz= bar=1i", K::MissingTagValue);
    add(
        "metrics,bananas=,platanos=great value=1.000000 1725629157696678000",
        K::MissingTagValue,
    );
    add("cpu,host=serverA,region=us-west", K::MissingFields);
    // unescaped '=' in tag value (Go TestParsePointInvalidTagFormat)
    add("cpu,host=f=o,", K::InvalidTagValue);
    add(r"cpu,host=f\==o,", K::InvalidTagValue);
    add("cpu,host=a=b value=1", K::InvalidTagValue);
    // duplicate tags (Go TestParsePointWithDuplicateTags)
    add(
        "cpu,host=serverA,host=serverB value=1i 1000000000",
        K::DuplicateTagKey,
    );
    add("cpu,b=2,b=1,c=3 value=1i 1000000000", K::DuplicateTagKey);
    add("cpu,b=2,c=3,b=1 value=1i 1000000000", K::DuplicateTagKey);
    add(r"cpu,a\ b=1,a\ b=2 value=1", K::DuplicateTagKey);
    // missing field key (Go TestParsePointMissingFieldName)
    add("cpu,host=serverA,region=us-west =", K::MissingFieldKey);
    add("cpu,host=serverA,region=us-west =123i", K::MissingFieldKey);
    add(
        "cpu,host=serverA,region=us-west value=123i,=456i",
        K::MissingFieldKey,
    );
    add("cpu value=1,", K::MissingFieldKey);
    add("cpu value=1, other=2", K::MissingFieldKey);
    add("cpu ,f=1", K::MissingFieldKey);
    // missing field value (Go TestParsePointMissingFieldValue; IOx)
    add(
        "cpu,host=serverA,region=us-west value=",
        K::MissingFieldValue,
    );
    add(
        "cpu,host=serverA,region=us-west value= 1000000000i",
        K::MissingFieldValue,
    );
    add(
        "cpu,host=serverA,region=us-west value=,value2=1i",
        K::MissingFieldValue,
    );
    add(
        "cpu,host=server01,region=us-west 1434055562000000000i",
        K::MissingFieldValue,
    );
    add(
        "cpu,host=server01,region=us-west value=1i,b",
        K::MissingFieldValue,
    );
    add("testmeasure,foo=f bar=1i,baz=", K::MissingFieldValue);
    add("cpu v= ", K::MissingFieldValue);
    add(r#"cpu "\, '= "\ v=1.0"#, K::MissingFieldValue);
    // bad field values (Go TestParsePointBadNumber and friends; IOx)
    add(
        r#"m f="blah"=123,r 1531703600000000000"#,
        K::InvalidFieldValue,
    );
    add(r#"cpu,host=serverA value="test"""#, K::InvalidFieldValue);
    for v in [
        "-",
        "-i",
        "-.",
        ".",
        "1.0i",
        "1ii",
        "1a",
        "-e-e-e",
        "42+3",
        "-123u",
        ".1a",
        "0.-1",
        "1.1.1",
        "a",
        "9ie10",
        "9e10i",
        "NaN",
        "nAn",
        "nan",
        "-nan",
        "inf",
        "Inf",
        "-inf",
        "+inf",
        "infinity",
        "Infinity",
        "+1",
        "+1i",
        "+1u",
        "--1u",
        "-1u",
        "-0u",
        "1.5u",
        "1e3i",
        "1e3u",
        "tru",
        "tRUE",
        "yes",
        "T1",
        "falsey",
        "0x10",
        "1_000",
        "\"abc\"x",
        "-1.234456e",
        "-1.234456e+",
        "-1.234456E",
        "-1.234456E+",
        "-1.234456E-",
        "1e",
        "\0",
        "1\t2",
        "é",
    ] {
        add(&format!("cpu v={v}"), K::InvalidFieldValue);
        add(&format!("cpu v={v},w=1"), K::InvalidFieldValue);
        add(&format!("cpu v={v} 1"), K::InvalidFieldValue);
    }
    add("cpu value=NaN 1000000000", K::InvalidFieldValue);
    add("m,tag1=one,tag2=2 value=\0 123", K::InvalidFieldValue);
    add("cpu value=1\t123", K::InvalidFieldValue);
    // out of range (Go TestParsePointMaxInt64 .. TestParsePointMinUint64, Max/MinFloat64; IOx)
    add(
        "cpu,host=serverA,region=us-west value=9223372036854775808i",
        K::ValueOutOfRange,
    );
    add(
        "cpu,host=serverA,region=us-west value=-9223372036854775809i",
        K::ValueOutOfRange,
    );
    add(
        "cpu,host=serverA,region=us-west value=18446744073709551616u",
        K::ValueOutOfRange,
    );
    add(
        "m0 field=99999999999999999999999999999999i 99",
        K::ValueOutOfRange,
    );
    add(
        "m0 field=99999999999999999999999999999999u 99",
        K::ValueOutOfRange,
    );
    add(&format!("cpu value=1{max_float}"), K::ValueOutOfRange);
    add(&format!("cpu value=-1{max_float}"), K::ValueOutOfRange);
    add("cpu value=1e400", K::ValueOutOfRange);
    add("cpu value=-1e309", K::ValueOutOfRange);
    // strings
    add(r#"cpu,host=serverA value="test"#, K::UnterminatedString);
    add(r#"cpu value="test\""#, K::UnterminatedString);
    add(r#"cpu value=""#, K::UnterminatedString);
    // timestamps (Go TestParsePointInvalidTimestamp, TestParsePoint_TrailingSlash; IOx)
    add("cpu value=1 9223372036854775808", K::InvalidTimestamp);
    add("cpu value=1 -92233720368547758078", K::InvalidTimestamp);
    add("cpu value=1 -", K::InvalidTimestamp);
    add("cpu value=1 -/", K::InvalidTimestamp);
    add("cpu value=1 -1?", K::InvalidTimestamp);
    add("cpu value=1 1-", K::InvalidTimestamp);
    add(r"a v=1 0\", K::InvalidTimestamp);
    add(
        "m0 field=1i 99999999999999999999999999999999",
        K::InvalidTimestamp,
    );
    add("cpu value=1 1.5", K::InvalidTimestamp);
    add("cpu value=1 +1", K::InvalidTimestamp);
    add("cpu value=1 1e9", K::InvalidTimestamp);
    add("cpu value=1 123\t", K::InvalidTimestamp);
    add("cpu value=1 123\r", K::InvalidTimestamp);
    add("cpu value=1 9223372036854775807 12", K::TrailingData);
    add("cpu value=1 123 456", K::TrailingData);
    add("cpu value=1 123  x", K::TrailingData);
    // control characters in names (corpus "non-printable character in ..."; IOx nulls)
    add("x\u{1}y v=1", K::ControlCharacter);
    add("m,x\u{1}y=v v=1", K::ControlCharacter);
    add("m,k=x\u{1}y v=1", K::ControlCharacter);
    add("m x\u{1}y=1", K::ControlCharacter);
    add("\0 field=1 1234", K::ControlCharacter);
    add("\0,tag1=1,tag2=2 value=1 123", K::ControlCharacter);
    add("cpu,tag\x001=v0 value=1", K::ControlCharacter);
    add("m,k=a\tb v=1", K::ControlCharacter);
    add("cpu\tvalue=1", K::ControlCharacter);
    add("m,k=v\x7f v=1", K::ControlCharacter);
    add(":\u{14}\\", K::ControlCharacter);
    add("\u{1b}# /", K::ControlCharacter);
    // newline handling in parse_line
    add("m f=1\nm f=2", K::UnexpectedNewline);
    add("m f=1\n", K::UnexpectedNewline);
    add("m f=1\r\n", K::InvalidFieldValue); // parse_line does not strip CR
    add("m,t=a\nb f=1", K::MissingFields);
    // length limits (IOx test_large_*)
    let long = "a".repeat(MAX_TOKEN_LEN + 1);
    add(&format!("{long},tag1=bar value=1i 123"), K::TooLong);
    add(&format!("foo,{long}=bar value=1i 123"), K::TooLong);
    add(
        &format!("foo,tag1=normal,tag={long} value=1i 123"),
        K::TooLong,
    );
    add(&format!("foo,tag1=bar {long}=1i 123"), K::TooLong);
    add(
        &format!(
            "foo,tag1=bar value=\"{}\" 123",
            "a".repeat(MAX_STRING_FIELD_LEN + 1)
        ),
        K::TooLong,
    );
    add(
        &format!("foo value=\"{}\"", "\\\\".repeat(MAX_STRING_FIELD_LEN + 1)),
        K::TooLong,
    );
    add(
        &format!("foo value=\"{}", "a".repeat(3 * MAX_STRING_FIELD_LEN)),
        K::TooLong,
    );

    // invalid UTF-8 (corpus "invalid utf-8 in ...")
    let mut add_bytes = |input: &[u8], kind: ParseErrorKind| cases.push((input.to_vec(), kind));
    add_bytes(b"bad\xff v=1", K::InvalidUtf8);
    add_bytes(b"m,bad\xff=foo v=1", K::InvalidUtf8);
    add_bytes(b"m,foo=bad\xff v=1", K::InvalidUtf8);
    add_bytes(b"m bad\xff=1", K::InvalidUtf8);
    add_bytes(b"m f=\"bad\xff\"", K::InvalidUtf8);
    add_bytes(b"m f=\"bad\xc3\"", K::InvalidUtf8);
    add_bytes(b"m\\ bad\xff v=1", K::InvalidUtf8);
    add_bytes(b"m f=\"\\\"bad\xff\"", K::InvalidUtf8);
    add_bytes(b"m v=1 12\xff", K::InvalidTimestamp);
    add_bytes(b"m v=1\xff", K::InvalidFieldValue);
    cases
}

#[test]
fn invalid_lines_are_errors_of_the_right_kind() {
    let cases = invalid_cases();
    assert!(cases.len() >= 250, "only {} invalid cases", cases.len());
    for (input, kind) in &cases {
        let e = parse_err(input);
        assert_eq!(
            e.kind,
            *kind,
            "input {:?}: got {:?} ({})",
            String::from_utf8_lossy(input),
            e.kind,
            e.message
        );
        assert!(!e.message.is_empty());
        assert!(e.message.len() < 400, "message too long: {}", e.message);
        // Every invalid line must also be reported (not skipped, not panicking) by `lines`,
        // unless `lines` legitimately skips it (blank/comment) or splits it.
        let items: Vec<LineItem<'_>> = lines(input).collect();
        if !matches!(
            kind,
            ParseErrorKind::EmptyLine
                | ParseErrorKind::CommentLine
                | ParseErrorKind::UnexpectedNewline
        ) && !input.contains(&b'\n')
            && !input.ends_with(b"\r")
        {
            assert_eq!(items.len(), 1, "{:?}", String::from_utf8_lossy(input));
            assert_eq!(items[0].result.as_ref().map_err(|e| e.kind), Err(*kind));
        }
    }
}

#[test]
fn exact_length_limits_are_accepted() {
    // Names as long as the key bound allows (a name alone is at most MAX_TOKEN_LEN, which
    // the key bound of 65,535 makes unreachable): `m,k=v` of 60,002 bytes, `#!~#` and a
    // field key of 5,529 make 65,535; the string value at its own limit.
    let (m, k, v) = ("a".repeat(30_000), "b".repeat(10_000), "c".repeat(20_000));
    let f = "d".repeat(65_535 - 60_002 - 4);
    let value = "b".repeat(MAX_STRING_FIELD_LEN);
    let input = format!("{m},{k}={v} {f}=\"{value}\" 123");
    let line = parse_ok(&input);
    assert_eq!(line.measurement, m.as_str());
    assert_eq!(
        line.tags,
        vec![(Cow::from(k.as_str()), Cow::from(v.as_str()))]
    );
    assert_eq!(line.fields, vec![(Cow::from(f.as_str()), s(&value))]);
    let over = format!("{m},{k}={v} {f}d=\"{value}\" 123");
    assert_eq!(
        parse_line(over.as_bytes()).map_err(|e| e.kind),
        Err(ParseErrorKind::TooLong)
    );
    // Escaped: 64 KiB after unescaping is fine even though the raw text is twice as long.
    let escaped = format!("m v=\"{}\"", "\\\\".repeat(MAX_STRING_FIELD_LEN));
    let line = parse_ok(&escaped);
    assert_eq!(line.fields[0].1, s(&"\\".repeat(MAX_STRING_FIELD_LEN)));
}

#[test]
fn many_tags_and_fields() {
    // Go TestParsePointWithVariousTags / TestNewPointLargeNumberOfTags.
    let mut input = String::from("m");
    for n in 0..1000 {
        input.push_str(&format!(",t{n}=x{n}"));
    }
    input.push_str(" v=0");
    for n in 0..1000 {
        input.push_str(&format!(",f{n}={n}i"));
    }
    let line = parse_ok(&input);
    assert_eq!(line.tags.len(), 1000);
    assert_eq!(line.tags[999], (Cow::from("t999"), Cow::from("x999")));
    assert_eq!(line.fields.len(), 1001);
    assert_eq!(line.fields[1000], (Cow::from("f999"), i(999)));

    // Duplicates among many keys take the hashing path.
    let dup_tag = format!("{},t500=y v=1", input.split(' ').next().unwrap_or_default());
    assert_eq!(
        parse_err(dup_tag.as_bytes()).kind,
        ParseErrorKind::DuplicateTagKey
    );
    let dup_fields = format!("{input},f10=-1i,v=true");
    let line = parse_ok(&dup_fields);
    assert_eq!(line.fields.len(), 1001);
    assert_eq!(line.fields[0], (Cow::from("v"), b(true)));
    assert_eq!(line.fields[11], (Cow::from("f10"), i(-1)));
}

// ---------------------------------------------------------------------------------------------
// Zero-copy and error messages

#[test]
fn tokens_are_borrowed_unless_escaped() {
    let input = r#"cpu,host=a,esc\ key=v\,1 plain="s",esc\=f="q\"uote",n=1i 5"#;
    let line = parse_ok(input);
    assert!(matches!(line.measurement, Cow::Borrowed("cpu")));
    assert!(matches!(line.tags[0].0, Cow::Borrowed("host")));
    assert!(matches!(line.tags[0].1, Cow::Borrowed("a")));
    assert!(matches!(&line.tags[1].0, Cow::Owned(k) if k == "esc key"));
    assert!(matches!(&line.tags[1].1, Cow::Owned(v) if v == "v,1"));
    assert!(matches!(line.fields[0].0, Cow::Borrowed("plain")));
    assert!(matches!(
        line.fields[0].1,
        FieldValue::String(Cow::Borrowed("s"))
    ));
    assert!(matches!(&line.fields[1].0, Cow::Owned(k) if k == "esc=f"));
    assert!(matches!(&line.fields[1].1, FieldValue::String(Cow::Owned(v)) if v == "q\"uote"));
    // A backslash that escapes nothing keeps the token borrowed.
    let line = parse_ok(r#"c\pu,k=C:\dir f="C:\dir""#);
    assert!(matches!(line.measurement, Cow::Borrowed(r"c\pu")));
    assert!(matches!(line.tags[0].1, Cow::Borrowed(r"C:\dir")));
    assert!(matches!(
        line.fields[0].1,
        FieldValue::String(Cow::Borrowed(r"C:\dir"))
    ));
    // Borrowed slices point into the input.
    let bytes = input.as_bytes();
    let line = parse_line(bytes).unwrap();
    match &line.measurement {
        Cow::Borrowed(m) => assert!(bytes.as_ptr_range().contains(&m.as_ptr())),
        Cow::Owned(_) => panic!("measurement should be borrowed"),
    }
}

#[test]
fn error_messages_name_reason_and_token() {
    let msg = |input: &str| parse_err(input.as_bytes()).message;
    assert_eq!(
        msg("cpu usage=1.2.3"),
        "invalid field value for field 'usage': '1.2.3'"
    );
    assert_eq!(
        msg("cpu v=9223372036854775808i"),
        "integer field value out of range for field 'v': '9223372036854775808i'"
    );
    assert_eq!(msg("cpu,host=a,host=b v=1"), "duplicate tag key 'host'");
    assert_eq!(msg("cpu,host= v=1"), "missing tag value for tag key 'host'");
    assert_eq!(msg("cpu v=1 12a"), "invalid timestamp '12a'");
    assert_eq!(
        msg("cpu v=1 12 13"),
        "unexpected data after timestamp: '13'"
    );
    assert_eq!(msg("cpu v=tru"), "invalid field value for field 'v': 'tru'");
    assert_eq!(
        msg("x\u{1}y v=1"),
        "invalid control character in measurement 'x\\u{1}y'"
    );
    assert!(msg("cpu,host=a=b v=1").contains("unescaped '='"));
    assert!(msg("cpu v=\"abc").contains("no closing quote"));
    let e = parse_err(b"m,k=bad\xff v=1");
    assert_eq!(e.message, "invalid UTF-8 in tag value 'bad\u{FFFD}'");
    // Long tokens are truncated to 64 bytes in messages.
    let long = format!("cpu v={}x", "1".repeat(200));
    let m = msg(&long);
    assert_eq!(
        m,
        format!("invalid field value for field 'v': '{}...'", "1".repeat(64))
    );
    // Truncation never splits a UTF-8 character.
    let long = format!("cpu v={}", "é".repeat(100));
    let m = msg(&long);
    assert!(m.ends_with("...'"), "{m}");
    assert!(!m.contains('\u{FFFD}'), "{m}");
    // Display is the message.
    assert_eq!(parse_err(b"cpu").to_string(), parse_err(b"cpu").message);
}

// ---------------------------------------------------------------------------------------------
// Writer

#[test]
fn writer_output_is_canonical() {
    let line = ParsedLine {
        measurement: Cow::from("m,and m=x"),
        tags: vec![(Cow::from("tag ,1="), Cow::from("val ,1="))],
        fields: vec![
            (
                Cow::from("field ,1="),
                FieldValue::String(Cow::from("Foo\"Bar\\ \n")),
            ),
            (Cow::from("f"), f(1.0)),
            (Cow::from("g"), f(0.1)),
            (Cow::from("h"), f(-1e16)),
            (Cow::from("i"), f(5e-324)),
            (Cow::from("j"), i(-42)),
            (Cow::from("k"), u(42)),
            (Cow::from("l"), b(true)),
            (Cow::from("m"), b(false)),
            (Cow::from("n"), f(-0.0)),
        ],
        timestamp: Some(-33),
    };
    let out = to_lp(&line);
    assert_eq!(
        out,
        "m\\,and\\ m=x,tag\\ \\,1\\==val\\ \\,1\\= field\\ \\,1\\==\"Foo\\\"Bar\\\\ \n\",f=1.0,g=0.1,h=-1e16,i=5e-324,j=-42i,k=42u,l=true,m=false,n=-0.0 -33"
    );
    let reparsed = parse_ok(&out);
    assert_eq!(reparsed, line);
    // Appends, without a trailing newline.
    let mut buf = String::from("x\n");
    write_line(&pl("cpu", &[], vec![("v", i(1))], None), &mut buf);
    assert_eq!(buf, "x\ncpu v=1i");
}

#[test]
fn writer_matches_go_escaping_examples() {
    // Go TestNewPointEscaped / TestParsePointToString.
    let line = pl(
        "cpu,main",
        &[("tag,bar", "value")],
        vec![("name,bar", f(1.0))],
        Some(0),
    );
    assert_eq!(to_lp(&line), r"cpu\,main,tag\,bar=value name\,bar=1.0 0");
    let line = pl(
        "cpu main",
        &[("tag bar", "value")],
        vec![("name bar", f(1.0))],
        Some(0),
    );
    assert_eq!(to_lp(&line), r"cpu\ main,tag\ bar=value name\ bar=1.0 0");
    let line = pl(
        "cpu=main",
        &[("tag=bar", "value=foo")],
        vec![("name=bar", f(1.0))],
        Some(0),
    );
    assert_eq!(
        to_lp(&line),
        r"cpu=main,tag\=bar=value\=foo name\=bar=1.0 0"
    );
    // Go TestEscapeStringField.
    for (raw, escaped) in [
        ("abcdefg", "abcdefg"),
        (r#"one double quote " ."#, r#"one double quote \" ."#),
        (
            r#"quote " then backslash \ ."#,
            r#"quote \" then backslash \\ ."#,
        ),
        (
            r#"backslash \ then quote " ."#,
            r#"backslash \\ then quote \" ."#,
        ),
    ] {
        let line = pl("t", &[], vec![("s", s(raw))], None);
        assert_eq!(to_lp(&line), format!("t s=\"{escaped}\""));
        assert_eq!(parse_ok(&to_lp(&line)), line);
    }
    // Backslashes before special characters in names survive a round trip.
    let line = pl(
        r"a\,b\ c",
        &[(r"k\=", r"v\,\ x")],
        vec![(r"f\ ", f(2.5))],
        None,
    );
    assert_eq!(parse_ok(&to_lp(&line)), line);
}

// ---------------------------------------------------------------------------------------------
// lines(): splitting, skipping, numbering

fn collect(body: &[u8]) -> Vec<(usize, String, Result<ParsedLine<'_>, ParseErrorKind>)> {
    lines(body)
        .map(|item| {
            (
                item.line_number,
                String::from_utf8_lossy(item.text).into_owned(),
                item.result.map_err(|e| e.kind),
            )
        })
        .collect()
}

/// Recycled vectors (`Lines::recycle`) change nothing: the same items as without, whatever
/// mix of fast-path lines, general-parser lines, errors and tag-less lines follows.
#[test]
fn recycled_lines_parse_the_same() {
    let body = b"cpu,host=a,dc=x u=1i,v=2.5,w=\"s\" 10\n\
        m v=1\n\
        cpu,host=b\\ c,dc=y u=2i,v=3.5 20\n\
        bad line\n\
        cpu,host=a,host=b v=1\n\
        cpu,a=1,b=2,c=3,d=4,e=5,f=6,g=7,h=8,i=9,j=10,k=11,l=12 v=1,v=2,x=3,y=4,z=5\n\
        m2 s=\"multi\nline\" 30\n\
        cpu,host=a v=1 40\n";
    let plain = collect(body);
    let mut recycled = Vec::new();
    let mut it = lines(body);
    while let Some(item) = it.next() {
        let result = match item.result {
            Ok(line) => {
                let copy = line.clone();
                it.recycle(line);
                Ok(copy)
            }
            Err(e) => Err(e.kind),
        };
        recycled.push((
            item.line_number,
            String::from_utf8_lossy(item.text).into_owned(),
            result,
        ));
    }
    assert_eq!(recycled, plain);
    assert_eq!(plain.len(), 8, "{plain:?}");
}

#[test]
fn line_numbers_count_blank_comment_and_crlf_lines() {
    let body = b"# comment\r\n\r\ncpu value=1 1\r\n   \r\n\tcpu value=2 2\n# another\n  # indented\nbad line\r\n\ncpu,host=a value=3\r\n\r\n";
    let items = collect(body);
    assert_eq!(items.len(), 4, "{items:?}");
    assert_eq!(
        items[0],
        (
            3,
            "cpu value=1 1".to_string(),
            Ok(pl("cpu", &[], vec![("value", f(1.0))], Some(1)))
        )
    );
    assert_eq!(
        items[1],
        (
            5,
            "\tcpu value=2 2".to_string(),
            Ok(pl("cpu", &[], vec![("value", f(2.0))], Some(2)))
        )
    );
    assert_eq!(
        items[2],
        (
            8,
            "bad line".to_string(),
            Err(ParseErrorKind::MissingFieldValue)
        )
    );
    assert_eq!(
        items[3],
        (
            10,
            "cpu,host=a value=3".to_string(),
            Ok(pl("cpu", &[("host", "a")], vec![("value", f(3.0))], None))
        )
    );
}

#[test]
fn lines_edge_cases() {
    assert!(collect(b"").is_empty());
    assert!(collect(b"\n\n\n").is_empty());
    assert!(collect(b"# comment").is_empty());
    assert!(collect(b" \t \r\n\r\n# x\r\n").is_empty());
    // No trailing newline, trailing CR at end of body.
    let items = collect(b"a v=1\nb v=2\r");
    assert_eq!(items.len(), 2);
    assert_eq!((items[1].0, items[1].1.as_str()), (2, "b v=2"));
    assert!(items[1].2.is_ok());
    // A lone CR inside a line is not a line break.
    let items = collect(b"a v=1 1\rb v=2\n");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].2, Err(ParseErrorKind::InvalidTimestamp));
    // Go TestParsePointsBlankLine / TestParsePointsWithPrecisionComments.
    let items = collect(b"cpu value=1i 1000000000\n\ncpu value=2i 2000000000");
    assert_eq!(items.iter().map(|i| i.0).collect::<Vec<_>>(), vec![1, 3]);
    let items = collect(
        b"\t# a point is below\ncpu,host=serverA,region=us-east value=1.0 946730096789012345",
    );
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].0, 2);
    // IOx parse_advance_after_error / parse_lines_returns_all_lines_even_when_a_line_errors.
    let items = collect(b"foo,tag0=value1 asdf=23.1.22,jkl=4\nfoo,tag0=value2 asdf=22.1,jkl=5");
    assert_eq!(items[0].2, Err(ParseErrorKind::InvalidFieldValue));
    assert_eq!(
        items[1].2,
        Ok(pl(
            "foo",
            &[("tag0", "value2")],
            vec![("asdf", f(22.1)), ("jkl", f(5.0))],
            None
        ))
    );
    let items = collect(b"goodline,tag1=one,tag2=2 value=1 123\n        badline,\n        anothergoodline,tag3=3,tag4=4 value=67 1234");
    let kinds: Vec<_> = items
        .iter()
        .map(|i| i.2.as_ref().map(|_| ()).map_err(|k| *k))
        .collect();
    assert_eq!(
        kinds,
        vec![Ok(()), Err(ParseErrorKind::MissingTagKey), Ok(())]
    );
    // Go TestParsePointsUnbalancedQuotedTags: quotes in tags do not join lines.
    let items = collect(b"baz,mytag=\"a x=1 1441103862125\nbaz,mytag=a z=1 1441103862126");
    assert_eq!(items.len(), 2);
    assert_eq!(
        items[0].2,
        Ok(pl(
            "baz",
            &[("mytag", "\"a")],
            vec![("x", f(1.0))],
            Some(1_441_103_862_125)
        ))
    );
    assert_eq!(
        items[1].2,
        Ok(pl(
            "baz",
            &[("mytag", "a")],
            vec![("z", f(1.0))],
            Some(1_441_103_862_126)
        ))
    );
    // Go TestParsePointsQuotesInFieldKey / TestParsePointsQuotesInTags.
    let items = collect(b"cpu \"a=1\ncpu value=2 1");
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].2, Ok(pl("cpu", &[], vec![("\"a", f(1.0))], None)));
    let items = collect(b"t159,label=hey\\ \"ya a=1i,value=0i\nt159,label=another a=2i,value=1i 1");
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|i| i.2.is_ok()));
    // Invalid UTF-8 and NUL bytes never panic and are reported per line.
    let items = collect(b"\xff\xfe v=1\nm v=1\n\0\0\0");
    assert_eq!(items.len(), 3);
    assert_eq!(
        items[0].2.as_ref().err(),
        Some(&ParseErrorKind::InvalidUtf8)
    );
    assert!(items[1].2.is_ok());
    assert_eq!(
        items[2].2.as_ref().err(),
        Some(&ParseErrorKind::ControlCharacter)
    );
}

#[test]
fn string_values_may_span_lines() {
    // Go TestParsePointWithStringWithNewline; IOx split_lines tests.
    let body = b"m s=\"a\nb\" 1\nm v=1\r\nm s=\"x\r\ny\",t=1i\r\nm v=2";
    let items = collect(body);
    assert_eq!(items.len(), 4, "{items:?}");
    assert_eq!(
        items[0],
        (
            1,
            "m s=\"a\nb\" 1".to_string(),
            Ok(pl("m", &[], vec![("s", s("a\nb"))], Some(1)))
        )
    );
    assert_eq!(items[1].0, 3);
    assert_eq!(
        items[2],
        (
            4,
            "m s=\"x\r\ny\",t=1i".to_string(),
            Ok(pl("m", &[], vec![("s", s("x\r\ny")), ("t", i(1))], None))
        )
    );
    assert_eq!(items[3].0, 6);
    assert_eq!(items[3].2, Ok(pl("m", &[], vec![("v", f(2.0))], None)));
    // Escaped quote does not close the string; escaped backslash then quote does.
    let items = collect(b"meas,tag=val field=\"\\\"\nval\\\\\"\nnext v=1");
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0].0, 1);
    assert_eq!(
        items[0].2,
        Ok(pl(
            "meas",
            &[("tag", "val")],
            vec![("field", s("\"\nval\\"))],
            None
        ))
    );
    assert_eq!(items[1].0, 3);
    // A backslash-quote outside a string value is not a string: no joining (IOx split_lines).
    let items = collect(b"meas,tag=val field=\\\"\nval\"\nnext");
    assert_eq!(items.iter().map(|i| i.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(items[0].2, Err(ParseErrorKind::InvalidFieldValue));
    // Unterminated string with no later quote: error for that physical line only.
    let items = collect(b"m s=\"abc\nm v=1 2\nm v=3");
    assert_eq!(items.len(), 3);
    assert_eq!(
        items[0],
        (
            1,
            "m s=\"abc".to_string(),
            Err(ParseErrorKind::UnterminatedString)
        )
    );
    assert_eq!(items[1].0, 2);
    assert!(items[1].2.is_ok());
    assert_eq!(items[2].0, 3);
    // A later quote closes it (as in InfluxDB): the joined record is one error.
    let items = collect(b"m s=\"abc\nm v=\"x\"\nm v=3");
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0].0, 1);
    assert_eq!(items[0].2, Err(ParseErrorKind::InvalidFieldValue));
    assert_eq!(items[1].0, 3);
    assert!(items[1].2.is_ok());
    // Multi-line string through parse_line.
    assert_eq!(
        parse_ok("m s=\"one\ntwo\nthree\",n=1i 7"),
        pl(
            "m",
            &[],
            vec![("s", s("one\ntwo\nthree")), ("n", i(1))],
            Some(7)
        )
    );
    // Backslashes only after the line break.
    assert_eq!(
        parse_ok("m s=\"one\n\\\"two\\\"\",k\\ x=1i"),
        ParsedLine {
            measurement: Cow::from("m"),
            tags: vec![],
            fields: vec![
                (
                    Cow::from("s"),
                    FieldValue::String(Cow::from("one\n\"two\""))
                ),
                (Cow::from("k x"), i(1)),
            ],
            timestamp: None,
        }
    );
}

#[test]
fn string_value_spanning_lines_keeps_following_line_numbers() {
    let body = "a s=\"1\n2\n3\" 1\n\nb v=1\n".as_bytes();
    let items = collect(body);
    assert_eq!(items.iter().map(|i| i.0).collect::<Vec<_>>(), vec![1, 5]);
}

// ---------------------------------------------------------------------------------------------
// Property tests

/// Characters for names: any non-control char, with the special ones over-represented.
fn name_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => prop::sample::select(vec![',', '=', ' ', '\\', '"', '#', 'a', 'é', '🍭']),
        5 => any::<char>().prop_map(|c| if c.is_ascii_control() { '_' } else { c }),
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(name_char(), 1..10).prop_map(|cs| {
        let mut name: String = cs.into_iter().collect();
        // A name cannot end with a backslash (it would escape the following delimiter).
        if name.ends_with('\\') {
            name.push('z');
        }
        name
    })
}

fn measurement() -> impl Strategy<Value = String> {
    // A measurement cannot start with '#' (the line would be a comment).
    name().prop_map(|m| {
        if m.starts_with('#') {
            format!("m{m}")
        } else {
            m
        }
    })
}

fn string_value() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            3 => prop::sample::select(vec!['"', '\\', '\n', '\r', ',', ' ', '=', '\0', '\t']),
            5 => any::<char>(),
        ],
        0..16,
    )
    .prop_map(|cs| cs.into_iter().collect())
}

fn field_value() -> impl Strategy<Value = FieldValue<'static>> {
    prop_oneof![
        any::<f64>()
            .prop_filter("finite", |v| v.is_finite())
            .prop_map(FieldValue::Float),
        (-1e6f64..1e6).prop_map(FieldValue::Float),
        any::<i64>().prop_map(FieldValue::Integer),
        any::<u64>().prop_map(FieldValue::UInteger),
        string_value().prop_map(|s| FieldValue::String(Cow::Owned(s))),
        any::<bool>().prop_map(FieldValue::Boolean),
    ]
}

fn parsed_line() -> impl Strategy<Value = ParsedLine<'static>> {
    (
        measurement(),
        prop::collection::btree_map(name(), name(), 0..5),
        prop::collection::vec((name(), field_value()), 1..6),
        prop::option::of(any::<i64>()),
    )
        .prop_map(|(m, tags, fields, timestamp)| {
            let mut unique = Vec::<(Cow<'static, str>, FieldValue<'static>)>::new();
            for (k, v) in fields {
                if !unique.iter().any(|(uk, _)| uk == &k) {
                    unique.push((Cow::Owned(k), v));
                }
            }
            // Shuffle-free but not sorted: reverse the (sorted) tag map for variety.
            let tags = tags
                .into_iter()
                .rev()
                .map(|(k, v)| (Cow::Owned(k), Cow::Owned(v)))
                .collect();
            ParsedLine {
                measurement: Cow::Owned(m),
                tags,
                fields: unique,
                timestamp,
            }
        })
}

fn lp_ish_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(
                b" ,=\"\\\n\r\t#0123456789.-+eEiutfTFabcm\xff\xc3\xa9\x00".to_vec()
            ),
            1 => any::<u8>(),
        ],
        0..200,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn round_trip_write_then_parse(line in parsed_line()) {
        let text = to_lp(&line);
        let parsed = parse_line(text.as_bytes());
        prop_assert_eq!(parsed.as_ref(), Ok(&line), "written: {:?}", text);
        // Floats are bit-identical.
        if let Ok(p) = &parsed {
            for ((_, a), (_, b)) in p.fields.iter().zip(&line.fields) {
                if let (FieldValue::Float(x), FieldValue::Float(y)) = (a, b) {
                    prop_assert_eq!(x.to_bits(), y.to_bits());
                }
            }
        }
    }

    #[test]
    fn round_trip_many_lines_through_lines(
        body_lines in prop::collection::vec(parsed_line(), 1..6),
        crlf in any::<bool>(),
        blank_every in 1usize..4,
    ) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut body = String::new();
        let mut expected_numbers = Vec::new();
        let mut line_no = 1;
        for (n, line) in body_lines.iter().enumerate() {
            if n % blank_every == 0 {
                body.push_str("# comment");
                body.push_str(eol);
                body.push_str("  ");
                body.push_str(eol);
                line_no += 2;
            }
            let text = to_lp(line);
            expected_numbers.push(line_no);
            line_no += 1 + text.matches('\n').count();
            body.push_str(&text);
            body.push_str(eol);
        }
        let items: Vec<LineItem<'_>> = lines(body.as_bytes()).collect();
        prop_assert_eq!(items.len(), body_lines.len(), "body: {:?}", body);
        for ((item, line), number) in items.iter().zip(&body_lines).zip(&expected_numbers) {
            prop_assert_eq!(item.result.as_ref(), Ok(line));
            prop_assert_eq!(item.line_number, *number);
            let text = to_lp(line);
            prop_assert_eq!(item.text, text.as_bytes());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut count = 0usize;
        let mut last = 0usize;
        for item in lines(&body) {
            prop_assert!(item.line_number > last);
            last = item.line_number;
            count += 1;
        }
        prop_assert!(count <= body.len());
        let _ = parse_line(&body);
    }

    #[test]
    fn lp_ish_bytes_never_panic(body in lp_ish_bytes()) {
        for item in lines(&body) {
            // Whatever parses must survive a write/parse round trip.
            if let Ok(line) = &item.result {
                let text = to_lp(line);
                let reparsed = parse_line(text.as_bytes());
                prop_assert_eq!(reparsed.as_ref(), Ok(line), "text {:?}", text);
            }
        }
        let _ = parse_line(&body);
    }

    #[test]
    fn floats_equal_std_parse(
        int in "-?[0-9]{0,25}",
        frac in prop::option::of("[0-9]{0,25}"),
        exp in prop::option::of("[eE][+-]?[0-9]{1,3}"),
    ) {
        let mut text = int.clone();
        if let Some(frac) = &frac {
            text.push('.');
            text.push_str(frac);
        }
        if let Some(exp) = &exp {
            text.push_str(exp);
        }
        let line = format!("m v={text}");
        let ours = parse_line(line.as_bytes());
        let has_digit = text.bytes().take_while(|c| *c != b'e' && *c != b'E').any(|c| c.is_ascii_digit());
        match text.parse::<f64>() {
            Ok(v) if has_digit && v.is_finite() => {
                let got = ours.map(|l| l.fields[0].1.clone());
                prop_assert_eq!(got.clone(), Ok(FieldValue::Float(v)), "{}", text);
                if let Ok(FieldValue::Float(g)) = got {
                    prop_assert_eq!(g.to_bits(), v.to_bits(), "{}", text);
                }
            }
            _ => prop_assert!(ours.is_err(), "{} should be rejected", text),
        }
    }

    #[test]
    fn floats_written_by_rust_parse_back(v in any::<f64>().prop_filter("finite", |v| v.is_finite())) {
        for text in [format!("{v}"), format!("{v:?}"), format!("{v:e}"), format!("{v:E}")] {
            let line = format!("m v={text}");
            let got = parse_line(line.as_bytes()).map(|l| l.fields[0].1.clone());
            match got {
                Ok(FieldValue::Float(g)) => prop_assert_eq!(g.to_bits(), v.to_bits(), "{}", text),
                other => prop_assert!(false, "{} parsed as {:?}", text, other),
            }
        }
    }

    #[test]
    fn integers_round_trip(v in any::<i64>(), w in any::<u64>(), ts in any::<i64>()) {
        let line = format!("m a={v}i,b={w}u {ts}");
        prop_assert_eq!(
            parse_line(line.as_bytes()),
            Ok(pl("m", &[], vec![("a", i(v)), ("b", u(w))], Some(ts)))
        );
    }
}

#[test]
fn multi_line_string_errors_consume_the_whole_record() {
    // Closed multi-line string with invalid UTF-8: one error record up to the closing quote.
    let items = collect(b"m s=\"a\xff\nb\" 1\nm v=1");
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0].2, Err(ParseErrorKind::InvalidUtf8));
    assert_eq!((items[1].0, items[1].2.is_ok()), (3, true));
    // Invalid UTF-8 on the continuation line, outside the string.
    let items = collect(b"m s=\"a\nb\",k\xff=1i\nm v=1");
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0].2, Err(ParseErrorKind::InvalidUtf8));
    assert_eq!(items[1].0, 3);
    // Escapes and control characters on the continuation line.
    assert_eq!(
        parse_ok("m s=\"a\nb\",k\\ 1=2i"),
        ParsedLine {
            measurement: Cow::from("m"),
            tags: vec![],
            fields: vec![(Cow::from("s"), s("a\nb")), (Cow::from("k 1"), i(2))],
            timestamp: None,
        }
    );
    assert_eq!(
        parse_err(b"m s=\"a\nb\",k\x01=2i").kind,
        ParseErrorKind::ControlCharacter
    );
}

#[test]
fn pathological_inputs_stay_linear() {
    // These would take minutes if any step were quadratic in the record or body size.
    // 1. One record with 100k multi-line string values.
    let mut record = String::from("m a=\"\n\"");
    for _ in 0..100_000 {
        record.push_str(",a=\"x\ny\"");
    }
    let line = parse_ok(&record);
    assert_eq!(line.fields, vec![(Cow::from("a"), s("x\ny"))]);
    let items = collect(record.as_bytes());
    assert_eq!(items.len(), 1);
    // 2. 50k lines, each opening a string that the next line's quote closes.
    let body = "m f=\"x\n".repeat(50_000);
    let items = collect(body.as_bytes());
    assert_eq!(items.len(), 25_000);
    assert!(items.iter().all(|i| i.2.is_err()));
    // 3. Unterminated quote followed by 1 MB of quote-free lines.
    let mut body = String::from("m f=\"x\n");
    body.push_str(&"m v=1\n".repeat(200_000));
    let items = collect(body.as_bytes());
    assert_eq!(items.len(), 200_001);
    // (the 128 KiB search window ends before the body does: reported as too long)
    assert_eq!(items[0].2, Err(ParseErrorKind::TooLong));
    assert_eq!(items[0].1, "m f=\"x");
    assert!(items[1..].iter().all(|i| i.2.is_ok()));
    // 4. Long runs of escapes and backslashes in names and strings.
    let name = "\\,".repeat(5_000);
    let text = format!("{name},{name}={name} {name}=\"{}\"", "\\\\".repeat(20_000));
    let line = parse_ok(&text);
    assert_eq!(line.measurement.len(), 5_000);
    let text = format!("m,k={}x v=1", "\\".repeat(60_000));
    let line = parse_ok(&text);
    assert_eq!(line.tags[0].1.len(), 60_001);
    // Past the key bound too: the line is parsed whole (escapes, duplicate checks) before
    // its key is measured.
    let name = "\\,".repeat(20_000);
    let text = format!("{name},{name}={name} {name}=\"{}\"", "\\\\".repeat(20_000));
    assert_eq!(
        parse_line(text.as_bytes()).map_err(|e| e.kind),
        Err(ParseErrorKind::TooLong)
    );
    // 5. Thousands of distinct keys (hash-based duplicate detection): 5,000 within the key
    // bound, 20,000 past it (the duplicate check still runs over all of them).
    for (n, within) in [(5_000, true), (20_000, false)] {
        let mut many = String::from("m");
        for k in 0..n {
            many.push_str(&format!(",t{k}=v"));
        }
        many.push_str(" f=1");
        match parse_line(many.as_bytes()) {
            Ok(line) if within => assert_eq!(line.tags.len(), n),
            Err(e) if !within => assert_eq!(e.kind, ParseErrorKind::TooLong),
            other => panic!("{n} tags: {other:?}"),
        }
    }
}

#[test]
fn case_counts() {
    let valid = valid_cases().len();
    let invalid = invalid_cases().len();
    println!("table cases: {valid} valid, {invalid} invalid");
    assert!(valid + invalid >= 380);
}

// ---------------------------------------------------------------------------------------------
// Fast path (fast.rs) against the general parser (parser.rs)

/// Both parsers on the record at the start of `line` (`strip_cr` as in [`lines`]): the fast
/// path's result (`None` when it declines) and the general parser's. Where the fast path
/// accepts, both must agree on where the record ends.
fn fast_and_general(
    line: &[u8],
) -> (
    Option<ParsedLine<'_>>,
    Result<ParsedLine<'_>, super::ParseError>,
) {
    let bounds = super::parser::line_bounds(line, 0, true);
    let general = super::parser::parse_record(line, bounds, true, 0);
    let mut scratch = super::fast::Scratch::default();
    // With the buffer known to be UTF-8 (as `lines` passes a validated body), the same answer.
    if let Ok(text) = std::str::from_utf8(line) {
        let a = super::fast::parse_record(line, None, 0, true, &mut scratch);
        let a = a.map(|r| (r.text_end, r.next, r.newlines, r.result));
        let b = super::fast::parse_record(line, Some(text), 0, true, &mut scratch);
        let b = b.map(|r| (r.text_end, r.next, r.newlines, r.result));
        assert_eq!(a, b, "with and without a validated buffer");
    }
    let fast = super::fast::parse_record(line, None, 0, true, &mut scratch).map(|fast| {
        assert_eq!(
            (fast.text_end, fast.next, fast.newlines),
            (general.text_end, general.next, general.newlines),
            "record bounds of {:?}",
            String::from_utf8_lossy(line)
        );
        match fast.result {
            Ok(parsed) => parsed,
            Err(e) => panic!("the fast path returned an error: {e}"),
        }
    });
    (fast, general.result)
}

fn all_borrowed(line: &ParsedLine<'_>) -> bool {
    let borrowed = |c: &Cow<'_, str>| matches!(c, Cow::Borrowed(_));
    borrowed(&line.measurement)
        && line.tags.iter().all(|(k, v)| borrowed(k) && borrowed(v))
        && line
            .fields
            .iter()
            .all(|(k, v)| borrowed(k) && !matches!(v, FieldValue::String(Cow::Owned(_))))
}

/// Whatever the fast path accepts, the general parser accepts with the same value (floats
/// bit for bit) and every token borrowed.
fn check_fast_agrees(line: &[u8]) -> Result<bool, TestCaseError> {
    let (fast, general) = fast_and_general(line);
    let Some(fast) = fast else {
        return Ok(false);
    };
    let shown = String::from_utf8_lossy(line);
    prop_assert_eq!(Ok(&fast), general.as_ref(), "line {:?}", shown);
    prop_assert!(all_borrowed(&fast), "line {:?}", shown);
    if let Ok(general) = &general {
        for ((_, a), (_, b)) in fast.fields.iter().zip(&general.fields) {
            if let (FieldValue::Float(x), FieldValue::Float(y)) = (a, b) {
                prop_assert_eq!(x.to_bits(), y.to_bits(), "line {:?}", shown);
            }
        }
    }
    Ok(true)
}

#[test]
fn fast_path_takes_the_common_lines() {
    let accepted = [
        "cpu,hostname=host_0,region=eu-west-1 usage_user=58i,usage_system=2i 1451606400000000000",
        "cpu,hostname=host_0 usage_user=58.25,usage_idle=0.5,x=-1.5e3,y=.5,z=1. 1451606400000000000",
        "cpu usage=1",
        "  \tcpu v=1u,w=t,x=FALSE,y=\"a, b = c\",z=\"\"",
        "cpu,k=v   v=1   12   ",
        "cpu v=1 ",
        "cpu=load,\"q\"=\"v\" \"f\"=1i",
        "m v=\"tab\tinside\"",
        "cpu,host=é🍭 v=1",
        "m a=1,a=2",
    ];
    for line in accepted {
        let (fast, general) = fast_and_general(line.as_bytes());
        assert!(general.is_ok(), "{line:?}: {general:?}");
        assert!(fast.is_some(), "{line:?} should take the fast path");
        assert!(check_fast_agrees(line.as_bytes()).is_ok(), "{line:?}");
    }
    // Declined: escapes, control characters in names, strings left open, every error.
    let declined: [&[u8]; 14] = [
        b"cpu,host=a\\ b v=1",
        b"cpu v=\"a\\\"b\"",
        b"cpu v=\"open",
        b"c\x01pu v=1",
        b"cpu v=1\rx",
        b"cpu,a=1,a=2 v=1",
        b"cpu",
        b"cpu, v=1",
        b"cpu v=1i2",
        b"cpu v=1 12a",
        b"cpu v=1 1 2",
        b"cpu v=\"a\"b",
        b"# comment",
        b"   ",
    ];
    for line in declined {
        assert!(
            fast_and_general(line).0.is_none(),
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
}

/// Clean lines (no backslash) with names made of delimiter-adjacent characters, all value
/// kinds, variable spacing; the fast path should accept most of them.
fn clean_line() -> impl Strategy<Value = String> {
    let name = || "[a-z_0-9][a-z\"#é_0-9]{0,5}";
    let value = prop_oneof![
        any::<i64>().prop_map(|v| format!("{v}i")),
        any::<u64>().prop_map(|v| format!("{v}u")),
        any::<f64>()
            .prop_filter("finite", |v| v.is_finite())
            .prop_map(|v| format!("{v:?}")),
        (0u32..100_000, 0u32..100, 0usize..4).prop_map(|(a, b, w)| format!("{a}.{b:0w$}")),
        "-?[0-9]{1,20}(\\.[0-9]{0,20})?([eE][+-]?[0-9]{1,2})?",
        "[tTfF]|true|false|True|FALSE",
        "\"[a-z ,=\\t]{0,8}\"",
    ];
    (
        "[a-z_0-9\"=é]{1,6}",
        prop::collection::vec((name(), name()), 0..20),
        prop::collection::vec((name(), value), 1..12),
        prop::option::of(any::<i64>()),
        prop::collection::vec(1usize..3, 3),
    )
        .prop_map(|(m, tags, fields, ts, spaces)| {
            let mut out = m.trim_start_matches('#').to_string();
            if out.is_empty() {
                out.push('m');
            }
            for (k, v) in tags {
                out.push_str(&format!(",{k}={v}"));
            }
            out.push_str(&" ".repeat(spaces[0]));
            let fields: Vec<String> = fields
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            out.push_str(&fields.join(","));
            if let Some(ts) = ts {
                out.push_str(&" ".repeat(spaces[1]));
                out.push_str(&ts.to_string());
            }
            out.push_str(&" ".repeat(spaces[2] - 1));
            out
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn fast_path_agrees_on_clean_lines(line in clean_line()) {
        check_fast_agrees(line.as_bytes())?;
    }

    /// A few bytes of a clean line replaced, inserted or removed, half of the time at a
    /// delimiter: mostly errors and corner cases.
    #[test]
    fn fast_path_agrees_on_mutated_lines(
        line in clean_line(),
        edits in prop::collection::vec(
            (
                any::<prop::sample::Index>(),
                any::<bool>(),
                prop::sample::select(b" ,=\"\\\t\r\n#.-+eEiutf0a\xff\xc3".to_vec()),
                0u8..3,
            ),
            1..4,
        ),
    ) {
        let mut bytes = line.into_bytes();
        for (at, at_delimiter, byte, how) in edits {
            let delimiters: Vec<usize> = (0..bytes.len())
                .filter(|&i| matches!(bytes[i], b' ' | b',' | b'=' | b'"'))
                .collect();
            let i = if at_delimiter && !delimiters.is_empty() {
                delimiters[at.index(delimiters.len())]
            } else {
                at.index(bytes.len().max(1))
            };
            match how {
                0 if i < bytes.len() => bytes[i] = byte,
                2 if i < bytes.len() => {
                    bytes.remove(i);
                }
                _ => bytes.insert(i.min(bytes.len()), byte),
            }
        }
        check_fast_agrees(&bytes)?;
    }

    #[test]
    fn fast_path_agrees_on_lp_ish_bytes(body in lp_ish_bytes()) {
        check_fast_agrees(&body)?;
    }
}

#[test]
fn fast_path_accepts_most_clean_lines() {
    // Guards against the fast path silently declining everything (still correct, but slow).
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = clean_line();
    let (mut accepted, mut valid) = (0, 0);
    for _ in 0..500 {
        let line = strategy.new_tree(&mut runner).unwrap().current();
        let (fast, general) = fast_and_general(line.as_bytes());
        if general.is_ok() {
            valid += 1;
            accepted += usize::from(fast.is_some());
        }
    }
    assert!(valid > 100, "{valid} valid lines");
    assert!(
        accepted * 10 >= valid * 9,
        "fast path took {accepted} of {valid} valid lines"
    );
}

#[test]
fn fast_path_long_lines_and_many_tokens() {
    // Lines longer than the on-stack mask buffer, tokens crossing 64-byte blocks, many tags
    // and fields.
    for n in [1, 15, 16, 17, 31, 32, 33, 200] {
        let mut line = String::from("m");
        for t in 0..n {
            line.push_str(&format!(",tag_{t:03}={}", "v".repeat(1 + t % 70)));
        }
        line.push(' ');
        let fields: Vec<String> = (0..n)
            .map(|f| format!("{}{f}={f}.5", "f".repeat(f % 90)))
            .collect();
        line.push_str(&fields.join(","));
        line.push_str(" 1700000000000000000");
        let (fast, general) = fast_and_general(line.as_bytes());
        let fast = fast.unwrap_or_else(|| panic!("fast path declined {n} tokens"));
        assert_eq!(Ok(&fast), general.as_ref());
        assert_eq!((fast.tags.len(), fast.fields.len()), (n, n));
        assert!(check_fast_agrees(line.as_bytes()).is_ok());
    }
    // A string value longer than a block, full of delimiters.
    let line = format!("m s=\"{}\",v=1i", ", =".repeat(100));
    assert!(matches!(check_fast_agrees(line.as_bytes()), Ok(true)));
}

#[test]
fn fast_path_utf8_and_line_ends_around_block_boundaries() {
    // Non-ASCII bytes (valid and invalid UTF-8) around 64-byte block boundaries, inside the
    // line and right after its end, for lines that end in the on-stack blocks and in the
    // heap-buffer blocks (> 1 KiB): the fast path must agree with the general parser, and it
    // must never accept a line that is not valid UTF-8 (its ASCII shortcut skips validation).
    let inserts: [(&[u8], bool); 4] = [
        ("é".as_bytes(), true),
        ("\u{1F36D}".as_bytes(), true),
        (b"\xff", false),
        (b"\xc3", false),
    ];
    for base in [0usize, 1000] {
        for pad in base + 40..base + 140 {
            for (insert, valid) in inserts {
                let tag = [b"m,k=".as_slice(), &vec![b'a'; pad], insert, b" v=1"].concat();
                let string = [b"m s=\"".as_slice(), &vec![b'a'; pad], insert, b"\" 5"].concat();
                let after = [b"m,k=".as_slice(), &vec![b'a'; pad], b" v=1\r\n", insert].concat();
                let next_line = |line: &[u8]| [line, b"\nm v=2"].concat();
                for (line, inside) in [
                    (next_line(&tag), true),
                    (next_line(&string), true),
                    (tag, true),
                    (string, true),
                    (after, false),
                ] {
                    let accepted = matches!(check_fast_agrees(&line), Ok(true));
                    if inside && !valid {
                        assert!(!accepted, "accepted invalid UTF-8 (pad {pad})");
                    }
                    if valid || !inside {
                        assert!(accepted, "declined a valid line (pad {pad})");
                    }
                }
            }
        }
    }
}

#[test]
fn fast_path_record_bounds_match_lines() {
    // Through `lines`: CRLF, a last line without a terminator, a trailing '\r', and the
    // fast path mixed with lines it declines; items are exactly what the general parser
    // gives for each line on its own.
    let body = b"m v=1\r\nm,t=a\\ b v=2\n# c\n\n  m v=3\nm s=\"x\ny\" 4\nm v=5\r";
    let items = collect(body);
    let texts: Vec<&str> = items.iter().map(|i| i.1.as_str()).collect();
    assert_eq!(
        texts,
        [
            "m v=1",
            "m,t=a\\ b v=2",
            "  m v=3",
            "m s=\"x\ny\" 4",
            "m v=5"
        ]
    );
    let numbers: Vec<usize> = items.iter().map(|i| i.0).collect();
    assert_eq!(numbers, [1, 2, 5, 6, 8]);
    assert!(items.iter().all(|i| i.2.is_ok()), "{items:?}");
}

/// InfluxDB 1.x's key bound, as influxd 1.6.7 answered each of these: the series key
/// (measurement and tags as written) and that key with `#!~#` and a field key, at most
/// 65,535 bytes; a longer one is a bad line, however the bytes are spread over the names.
#[test]
fn keys_past_influxdbs_bound_are_bad_lines() {
    let ok = |line: &str| assert!(parse_line(line.as_bytes()).is_ok(), "{}", &line[..40]);
    let too_long = |line: &str, len: usize| {
        let e = parse_line(line.as_bytes()).expect_err(&line[..40]);
        assert_eq!(e.kind, ParseErrorKind::TooLong);
        assert!(
            e.message
                .starts_with(&format!("max key length exceeded: {len} > 65535")),
            "{}",
            e.message
        );
    };
    // `m,t=` + value + `#!~#` + `v`: 65,535 with a value of 65,526 bytes.
    ok(&format!("m,t={} v=1 5", "x".repeat(65_526)));
    too_long(&format!("m,t={} v=1 5", "x".repeat(65_527)), 65_536);
    too_long(&format!("m,t={} vv=1 5", "x".repeat(65_526)), 65_536);
    // The shortest record past the bound: 65,535 bytes, no timestamp (the fast path would
    // take it if the two sides of KEY_CHECK_ABOVE disagreed).
    let shortest = format!("m,t={} vv=1", "x".repeat(65_526));
    assert_eq!(shortest.len(), 65_535);
    too_long(&shortest, 65_536);
    let items: Vec<_> = lines(shortest.as_bytes()).collect();
    assert!(items[0].result.is_err());
    // Escapes count as written: a comma in a tag value is two bytes.
    too_long(&format!("m,t={}\\, v=1 5", "x".repeat(65_525)), 65_536);
    // Over already without a field key; spread over three tags.
    too_long(&format!("{} v=1 5", "m".repeat(65_536)), 65_536);
    let tags: Vec<String> = (0..3)
        .map(|i| format!("t{i}={}", "y".repeat(22_000)))
        .collect();
    too_long(&format!("m,{} v=1 5", tags.join(",")), 66_013);
    // Field keys after a string value that spans lines count too.
    let spanning = format!("m,t={} s=\"a\n\",{}=1", "x".repeat(65_000), "f".repeat(600));
    let items: Vec<_> = lines(spanning.as_bytes()).collect();
    let e = items[0]
        .result
        .as_ref()
        .expect_err("a key past the bound after a newline");
    assert_eq!(e.kind, ParseErrorKind::TooLong);
    // Through the body iterator too (the fast path never takes such a line).
    let body = format!("m,t={} v=1 5\nm v=2 6\n", "x".repeat(65_600));
    let items: Vec<_> = lines(body.as_bytes()).collect();
    assert!(items[0].result.is_err() && items[1].result.is_ok());
}
