//! Result column names of SELECT fields, as InfluxDB derives them.
//!
//! [`column_name`] is influxql's `Field.Name()`: the alias if any; else a call's function
//! name (`mean(value)` → `mean`, `percentile(value, 90)` → `percentile`); a field's name;
//! for arithmetic, the names of its field references and calls (not looking inside calls)
//! joined with `_` (`a + b` → `a_b`, `mean(a) * 100` → `mean`); the inner name for
//! parentheses; and the empty string for anything else (wildcards, literals, regexes).
//!
//! [`column_names`] is `SelectStatement.ColumnNames()` without the leading `time` column:
//! aliases are reserved first, then repeated generated names get `_1`, `_2`, ... suffixes,
//! and `top()` / `bottom()` add a column for each tag argument.

use std::collections::HashMap;

use super::ast::{Expr, Field};

/// The column name InfluxDB gives `field` (influxql `Field.Name()`).
pub fn column_name(field: &Field) -> String {
    if let Some(alias) = &field.alias
        && !alias.is_empty()
    {
        return alias.clone();
    }
    expr_name(&field.expr)
}

fn expr_name(expr: &Expr) -> String {
    match expr {
        Expr::Call(call) => call.name.clone(),
        Expr::VarRef(v) => v.name.clone(),
        Expr::Paren(inner) => expr_name(inner),
        Expr::Binary(_) => {
            let mut names = Vec::new();
            collect_names(expr, &mut names);
            names.join("_")
        }
        _ => String::new(),
    }
}

/// influxql's `binaryExprNameVisitor`: field names and call names, depth first, left to
/// right, not descending into call arguments.
fn collect_names<'a>(expr: &'a Expr, names: &mut Vec<&'a str>) {
    match expr {
        Expr::VarRef(v) => names.push(&v.name),
        Expr::Call(call) => names.push(&call.name),
        Expr::Binary(b) => {
            collect_names(&b.lhs, names);
            collect_names(&b.rhs, names);
        }
        Expr::Paren(inner) => collect_names(inner, names),
        _ => {}
    }
}

/// The names of the result columns after `time`, one per field plus one per tag argument
/// of `top()` / `bottom()`, made unique as InfluxDB does (`mean`, `mean_1`, ...).
pub fn column_names(fields: &[Field]) -> Vec<String> {
    let mut columns: Vec<Field> = Vec::with_capacity(fields.len());
    for field in fields {
        columns.push(field.clone());
        if let Expr::Call(call) = &field.expr
            && (call.name == "top" || call.name == "bottom")
        {
            for arg in call.args.iter().skip(1) {
                if let Expr::VarRef(_) = arg {
                    columns.push(Field {
                        expr: arg.clone(),
                        alias: None,
                    });
                }
            }
        }
    }

    let mut names: Vec<Option<String>> = vec![None; columns.len()];
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (slot, column) in names.iter_mut().zip(&columns) {
        if let Some(alias) = &column.alias
            && !alias.is_empty()
        {
            *slot = Some(alias.clone());
            seen.insert(alias.clone(), 1);
        }
    }
    for (slot, column) in names.iter_mut().zip(&columns) {
        if slot.is_some() {
            continue;
        }
        let mut name = column_name(column);
        if let Some(&first) = seen.get(&name) {
            let mut count = first;
            loop {
                let candidate = format!("{name}_{count}");
                if !seen.contains_key(&candidate) {
                    seen.insert(name, count + 1);
                    name = candidate;
                    break;
                }
                count += 1;
            }
        }
        *seen.entry(name.clone()).or_insert(0) += 1;
        *slot = Some(name);
    }
    names.into_iter().map(Option::unwrap_or_default).collect()
}
