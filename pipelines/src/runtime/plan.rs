//! A stage's SQL, compiled for streaming: what DataFusion runs per
//! micro-batch and what the runtime keeps as state.
//!
//! Three shapes of stage:
//! - **windowed** — one input table and an event-time window in GROUP BY.
//!   The SQL is split in two. The *pre-query* is the stateless part,
//!   run per micro-batch: `SELECT <row index>, <event time>, <group keys>,
//!   <aggregate arguments> FROM <input> WHERE …`. Its rows are folded into the
//!   keyed window state ([`super::state`]). When windows close, their rows
//!   (`keys…, window_start, window_end, one column per aggregate`) form a
//!   batch of the table `__smack_windows`, and the *final query* — the
//!   original SELECT list and HAVING, with every aggregate call replaced by
//!   its column — runs over it.
//! - **per-batch** — one input table, no GROUP BY: the SQL runs as written
//!   on every micro-batch.
//! - **join** — several input tables, no GROUP BY: rows are buffered until
//!   the inputs' watermarks pass them, then the SQL runs over everything
//!   that became complete at once. Joining windowed stages on
//!   `window_start` is exact: a window's rows all complete together.
//!
//! Hidden columns start with `__smack_`.

use super::state::AggKind;
use super::time::WindowFn;
use crate::spec::sql::{norm, window_fn};
use sqlparser::ast::{
    visit_expressions, visit_relations, DateTimeField, DuplicateTreatment, Expr, FunctionArg, FunctionArgExpr,
    FunctionArguments, GroupByExpr, Ident, ObjectNamePart, Query, Select, SelectItem, SetExpr, Statement, TableFactor,
    VisitMut, VisitorMut,
};
use sqlparser::ast::{BinaryOperator, JoinConstraint, JoinOperator};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use std::collections::HashMap;
use std::ops::ControlFlow;

/// The row index of the input batch, carried through the pre-query.
pub const ROW_COL: &str = "__smack_row";
/// The event time, in the pre-query's output.
pub const TS_COL: &str = "__smack_ts";
/// The time of an emitted row (window end), in the final query's output.
pub const TIME_COL: &str = "__smack_time";
/// The column of the closed-windows table numbering its rows, carried to
/// the end of the final query's output (before [`TIME_COL`]) so the rows
/// HAVING keeps can be put in window order.
pub const ORD_COL: &str = "__smack_ord";
/// The table of closed windows the final query reads.
pub const WINDOWS_TABLE: &str = "__smack_windows";

/// One aggregate call of a windowed stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggCall {
    /// Which aggregate.
    pub kind: AggKind,
    /// The pre-query column holding its argument (`None` for `COUNT(*)`).
    pub arg: Option<String>,
    /// The call as written, for messages.
    pub text: String,
}

/// A windowed stage, split into pre-query, state and final query.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowedPlan {
    /// The input table (a source or an earlier stage).
    pub input: String,
    /// The window function, in milliseconds.
    pub window: WindowFn,
    /// Runs per micro-batch over `input` (with [`ROW_COL`] added).
    pub pre_sql: String,
    /// The group-key columns, named as in the pre-query output and in
    /// [`WINDOWS_TABLE`].
    pub keys: Vec<String>,
    /// The aggregates, one column `__smack_agg<i>` each in [`WINDOWS_TABLE`].
    pub aggs: Vec<AggCall>,
    /// Runs over [`WINDOWS_TABLE`] when windows close; its last column is
    /// [`TIME_COL`].
    pub final_sql: String,
}

/// A stage that runs its SQL as written over each micro-batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerBatchPlan {
    /// The input table.
    pub input: String,
    /// The stage's SQL.
    pub sql: String,
}

/// A stage over several tables, run when its inputs' watermarks advance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinPlan {
    /// The input tables, in order of first mention.
    pub inputs: Vec<String>,
    /// The stage's SQL.
    pub sql: String,
}

/// A compiled stage.
#[derive(Debug, Clone, PartialEq)]
pub enum StagePlan {
    /// GROUP BY with an event-time window.
    Windowed(WindowedPlan),
    /// One input, no state.
    PerBatch(PerBatchPlan),
    /// Several inputs, joined per watermark advance.
    Join(JoinPlan),
}

impl StagePlan {
    /// The tables the stage reads.
    pub fn inputs(&self) -> Vec<String> {
        match self {
            StagePlan::Windowed(w) => vec![w.input.clone()],
            StagePlan::PerBatch(p) => vec![p.input.clone()],
            StagePlan::Join(j) => j.inputs.clone(),
        }
    }
}

const AGGS: [(&str, AggKind); 5] = [
    ("count", AggKind::Count),
    ("sum", AggKind::Sum),
    ("min", AggKind::Min),
    ("max", AggKind::Max),
    ("avg", AggKind::Avg),
];

/// DataFusion aggregates a windowed stage cannot keep incrementally.
const OTHER_AGGS: [&str; 24] = [
    "array_agg",
    "string_agg",
    "first_value",
    "last_value",
    "median",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "var",
    "var_pop",
    "var_samp",
    "variance",
    "approx_distinct",
    "approx_median",
    "approx_percentile_cont",
    "corr",
    "covar",
    "covar_pop",
    "covar_samp",
    "bit_and",
    "bit_or",
    "bool_and",
    "bool_or",
    "mean",
];

fn function_name(f: &sqlparser::ast::Function) -> String {
    match f.name.0.last() {
        Some(ObjectNamePart::Identifier(i)) => i.value.to_lowercase(),
        _ => String::new(),
    }
}

fn is_aggregate(e: &Expr) -> bool {
    let Expr::Function(f) = e else { return false };
    let n = function_name(f);
    f.over.is_none() && (AGGS.iter().any(|(a, _)| *a == n) || OTHER_AGGS.contains(&n.as_str()))
}

fn unnamed_args(f: &sqlparser::ast::Function) -> (Vec<&FunctionArgExpr>, bool) {
    match &f.args {
        FunctionArguments::List(l) => (
            l.args
                .iter()
                .filter_map(|a| match a {
                    FunctionArg::Unnamed(e) => Some(e),
                    _ => None,
                })
                .collect(),
            l.duplicate_treatment == Some(DuplicateTreatment::Distinct),
        ),
        _ => (Vec::new(), false),
    }
}

/// Compiles a stage's SQL. `name` names the stage in errors.
pub fn plan_stage(name: &str, sql: &str) -> Result<StagePlan, String> {
    plan_stage_with_lookups(name, sql, &[])
}

/// Like [`plan_stage`], where `lookups` name the pipeline's lookup tables:
/// they are not inputs (their rows are fetched by key for each query), and a
/// windowed stage may join them (its pre-query keeps the whole FROM).
pub fn plan_stage_with_lookups(name: &str, sql: &str, lookups: &[String]) -> Result<StagePlan, String> {
    let stmts = Parser::parse_sql(&GenericDialect {}, sql).map_err(|e| format!("stage {name}: {e}"))?;
    let [Statement::Query(q)] = stmts.as_slice() else {
        return Err(format!("stage {name}: expected one SELECT statement"));
    };
    let read = tables_of(q);
    let tables: Vec<String> = read.iter().filter(|t| !lookups.contains(t)).cloned().collect();
    if tables.is_empty() && !read.is_empty() {
        return Err(format!(
            "stage {name}: the query reads only lookups; FROM names a source or an earlier stage and JOIN the lookup"
        ));
    }
    if tables.is_empty() {
        return Err(format!("stage {name}: the query reads no table; expected a source or an earlier stage"));
    }
    let windowed = match q.body.as_ref() {
        SetExpr::Select(s) => match &s.group_by {
            GroupByExpr::Expressions(exprs, _) => {
                if exprs.iter().any(|e| window_fn(e).is_some()) {
                    true
                } else if !exprs.is_empty() {
                    return Err(format!(
                        "stage {name}: GROUP BY without an event-time window never completes on a stream; add TUMBLE(ts, size), HOP(ts, slide, size) or SESSION(ts, gap) to GROUP BY"
                    ));
                } else {
                    false
                }
            }
            GroupByExpr::All(_) => {
                return Err(format!("stage {name}: GROUP BY ALL is not supported in a stream stage"))
            }
        },
        _ => false,
    };
    if windowed {
        return plan_windowed(name, q, lookups).map(StagePlan::Windowed);
    }
    let mut has_agg = false;
    if let SetExpr::Select(s) = q.body.as_ref() {
        for item in &s.projection {
            if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item {
                let _ = visit_expressions(e, |e| {
                    has_agg |= is_aggregate(e);
                    ControlFlow::<()>::Continue(())
                });
            }
        }
    }
    if has_agg {
        return Err(format!(
            "stage {name}: aggregates over a stream need an event-time window in GROUP BY (TUMBLE, HOP or SESSION)"
        ));
    }
    if tables.len() == 1 {
        Ok(StagePlan::PerBatch(PerBatchPlan { input: tables[0].clone(), sql: sql.to_string() }))
    } else {
        Ok(StagePlan::Join(JoinPlan { inputs: tables, sql: sql.to_string() }))
    }
}

/// For a stage joining `lookup` (key columns `key`): per key column, the SQL
/// text of the input expression the ON clause compares it to with `=`
/// (`ON tx.card_id = cards.card_id` gives `tx.card_id` for `card_id`). The
/// runtime evaluates these over the input to learn which keys to fetch.
pub fn lookup_key_exprs(stage: &str, sql: &str, lookup: &str, key: &[String]) -> Result<Vec<String>, String> {
    let err = |m: String| format!("stage {stage}: {m}");
    let stmts = Parser::parse_sql(&GenericDialect {}, sql).map_err(|e| err(e.to_string()))?;
    let [Statement::Query(q)] = stmts.as_slice() else {
        return Err(err("expected one SELECT statement".into()));
    };
    let SetExpr::Select(select) = q.body.as_ref() else {
        return Err(err("expected a SELECT".into()));
    };
    for from in &select.from {
        for j in &from.joins {
            let TableFactor::Table { name: t, alias, .. } = &j.relation else { continue };
            let Some(ObjectNamePart::Identifier(i)) = t.0.last() else { continue };
            if norm(i) != lookup {
                continue;
            }
            // How the query names the lookup: its alias, else its name.
            let me = alias.as_ref().map(|a| norm(&a.name)).unwrap_or_else(|| lookup.to_string());
            let on = match &j.join_operator {
                JoinOperator::Join(c) | JoinOperator::Inner(c) | JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => {
                    match c {
                        JoinConstraint::On(e) => e,
                        _ => {
                            return Err(err(format!(
                                "the join to lookup `{lookup}` needs `ON <input column> = {me}.<key>`"
                            )))
                        }
                    }
                }
                _ => return Err(err(format!("lookup `{lookup}` is joined with JOIN or LEFT JOIN only"))),
            };
            let mut pairs: Vec<(String, String)> = Vec::new();
            key_pairs(on, &me, &mut pairs);
            return key
                .iter()
                .map(|k| {
                    pairs.iter().find(|(c, _)| c == k).map(|(_, e)| e.clone()).ok_or_else(|| {
                        err(format!(
                            "the ON clause of the join to lookup `{lookup}` does not compare its key `{k}` with `=`"
                        ))
                    })
                })
                .collect();
        }
    }
    Err(err(format!("the query does not JOIN lookup `{lookup}`")))
}

/// The query that lists the distinct keys a stage needs from `lookup`, over
/// its input table as the stage's FROM names it (alias kept):
/// `SELECT DISTINCT <expr> AS <key>, … FROM <input> [alias]`.
pub fn lookup_keys_sql(stage: &str, sql: &str, lookup: &str, key: &[String]) -> Result<String, String> {
    let exprs = lookup_key_exprs(stage, sql, lookup, key)?;
    let stmts = Parser::parse_sql(&GenericDialect {}, sql).map_err(|e| format!("stage {stage}: {e}"))?;
    let from = match stmts.as_slice() {
        [Statement::Query(q)] => match q.body.as_ref() {
            SetExpr::Select(s) if s.from.len() == 1 => s.from[0].relation.to_string(),
            _ => return Err(format!("stage {stage}: a stage joining a lookup reads one table in FROM")),
        },
        _ => return Err(format!("stage {stage}: expected one SELECT statement")),
    };
    let cols: Vec<String> = exprs.iter().zip(key).map(|(e, k)| format!("{e} AS {}", quoted(k))).collect();
    Ok(format!("SELECT DISTINCT {} FROM {from}", cols.join(", ")))
}

/// `lookup.col = <expr>` terms of an AND chain, as (col, expr text).
fn key_pairs(e: &Expr, lookup: &str, out: &mut Vec<(String, String)>) {
    let lookup_col = |e: &Expr| match e {
        Expr::CompoundIdentifier(parts) if parts.len() == 2 && norm(&parts[0]) == lookup => Some(norm(&parts[1])),
        _ => None,
    };
    match e {
        Expr::Nested(inner) => key_pairs(inner, lookup, out),
        Expr::BinaryOp { left, op: BinaryOperator::And, right } => {
            key_pairs(left, lookup, out);
            key_pairs(right, lookup, out);
        }
        Expr::BinaryOp { left, op: BinaryOperator::Eq, right } => match (lookup_col(left), lookup_col(right)) {
            (Some(c), None) => out.push((c, right.to_string())),
            (None, Some(c)) => out.push((c, left.to_string())),
            _ => {}
        },
        _ => {}
    }
}

/// The tables a stage's SQL reads (not its CTEs), in order of first mention.
pub fn tables_read(sql: &str) -> Vec<String> {
    match Parser::parse_sql(&GenericDialect {}, sql).as_deref() {
        Ok([Statement::Query(q)]) => tables_of(q),
        _ => Vec::new(),
    }
}

/// The tables a query reads (not its CTEs), in order of first mention.
fn tables_of(q: &Query) -> Vec<String> {
    let ctes: Vec<String> = q.with.iter().flat_map(|w| w.cte_tables.iter().map(|c| norm(&c.alias.name))).collect();
    let mut out: Vec<String> = Vec::new();
    let _ = visit_relations(q, |name| {
        if let Some(ObjectNamePart::Identifier(i)) = name.0.last() {
            let t = norm(i);
            if !ctes.contains(&t) && !out.contains(&t) {
                out.push(t);
            }
        }
        ControlFlow::<()>::Continue(())
    });
    out
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn plan_windowed(name: &str, q: &Query, lookups: &[String]) -> Result<WindowedPlan, String> {
    let err = |m: String| format!("stage {name}: {m}");
    if q.with.is_some() || q.order_by.is_some() || q.limit_clause.is_some() {
        return Err(
            err("a windowed stage is one SELECT … GROUP BY; WITH, ORDER BY and LIMIT are not supported".into()),
        );
    }
    let SetExpr::Select(select) = q.body.as_ref() else {
        return Err(err("expected a SELECT".into()));
    };
    let select: &Select = select;
    if select.distinct.is_some() {
        return Err(err("SELECT DISTINCT is not supported in a windowed stage".into()));
    }
    let [from] = select.from.as_slice() else {
        return Err(err("a windowed stage reads one table; join in a later stage".into()));
    };
    let joins_lookup = |j: &sqlparser::ast::Join| match &j.relation {
        TableFactor::Table { name: t, .. } => {
            matches!(t.0.last(), Some(ObjectNamePart::Identifier(i)) if lookups.contains(&norm(i)))
        }
        _ => false,
    };
    if !from.joins.iter().all(joins_lookup) {
        return Err(err("a windowed stage reads one table (and lookups); join in a later stage".into()));
    }
    let input = match &from.relation {
        TableFactor::Table { name: t, .. } => match t.0.last() {
            Some(ObjectNamePart::Identifier(i)) if lookups.contains(&norm(i)) => {
                return Err(err(format!("`{}` is a lookup; FROM names the stage's input and JOIN the lookup", norm(i))))
            }
            Some(ObjectNamePart::Identifier(i)) => norm(i),
            _ => return Err(err("expected a table name in FROM".into())),
        },
        _ => return Err(err("a windowed stage reads a table, not a subquery".into())),
    };
    let GroupByExpr::Expressions(group, _) = &select.group_by else {
        return Err(err("expected GROUP BY expressions".into()));
    };

    // The window and the keys.
    let mut window = None;
    let mut key_exprs: Vec<&Expr> = Vec::new();
    for e in group {
        match window_fn(e) {
            Some((w, _, example, f)) => {
                if window.is_some() {
                    return Err(err("only one window per stage".into()));
                }
                let (args, _) = unnamed_args(f);
                let exprs: Vec<&Expr> = args
                    .iter()
                    .filter_map(|a| match a {
                        FunctionArgExpr::Expr(e) => Some(e),
                        _ => None,
                    })
                    .collect();
                let ms = |e: &Expr| interval_ms(e).map_err(|m| err(format!("{w}: {m}")));
                let f = match (w, exprs.as_slice()) {
                    ("TUMBLE", [_, size]) => WindowFn::Tumble { size: ms(size)? },
                    ("HOP", [_, slide, size]) => WindowFn::Hop { slide: ms(slide)?, size: ms(size)? },
                    ("SESSION", [_, gap]) => WindowFn::Session { gap: ms(gap)? },
                    _ => return Err(err(format!("expected `{example}`"))),
                };
                window = Some((f, exprs[0].clone()));
            }
            None => key_exprs.push(e),
        }
    }
    let Some((window, ts)) = window else {
        return Err(err("expected an event-time window in GROUP BY".into()));
    };
    let mut key_names: Vec<String> = Vec::new();
    for (i, e) in key_exprs.iter().enumerate() {
        let n = match e {
            Expr::Identifier(id) => norm(id),
            Expr::CompoundIdentifier(p) => p.last().map(norm).unwrap_or_default(),
            _ => format!("__smack_k{i}"),
        };
        if key_names.contains(&n) || n == "window_start" || n == "window_end" {
            return Err(err(format!("GROUP BY names `{n}` twice")));
        }
        key_names.push(n);
    }
    let key_text: HashMap<String, String> =
        key_exprs.iter().zip(&key_names).map(|(e, n)| (e.to_string(), n.clone())).collect();

    // The aggregates, from the SELECT list and HAVING.
    let mut projection: Vec<(Expr, Option<Ident>)> = Vec::new();
    for item in &select.projection {
        match item {
            SelectItem::UnnamedExpr(e) => projection.push((e.clone(), None)),
            SelectItem::ExprWithAlias { expr, alias } => projection.push((expr.clone(), Some(alias.clone()))),
            _ => return Err(err("a windowed stage lists its columns; `*` is not supported".into())),
        }
    }
    let aliases: HashMap<String, Expr> =
        projection.iter().filter_map(|(e, a)| a.as_ref().map(|a| (norm(a), e.clone()))).collect();
    let mut having = select.having.clone();
    if let Some(h) = &mut having {
        // HAVING may name SELECT aliases; the final query's WHERE cannot.
        let _ = h.visit(&mut Rewrite(|e: &Expr| match e {
            Expr::Identifier(i)
                if !key_names.contains(&norm(i)) && !["window_start", "window_end"].contains(&norm(i).as_str()) =>
            {
                aliases.get(&norm(i)).cloned().map(|e| Expr::Nested(Box::new(e)))
            }
            _ => None,
        }));
    }
    let mut aggs: Vec<AggCall> = Vec::new();
    let mut arg_sql: Vec<String> = Vec::new();
    let mut problem: Option<String> = None;
    let mut collect = |e: &Expr| {
        let _ = visit_expressions(e, |e| {
            let Expr::Function(f) = e else { return ControlFlow::<()>::Continue(()) };
            if !is_aggregate(e) {
                return ControlFlow::Continue(());
            }
            let text = e.to_string();
            if aggs.iter().any(|a| a.text == text) {
                return ControlFlow::Continue(());
            }
            match agg_call(f, aggs.len()) {
                Ok((call, arg)) => {
                    if let Some(a) = arg {
                        arg_sql.push(a);
                    }
                    aggs.push(AggCall { text, ..call });
                }
                Err(m) => problem = problem.take().or(Some(m)),
            }
            ControlFlow::Continue(())
        });
    };
    projection.iter().for_each(|(e, _)| collect(e));
    having.iter().for_each(&mut collect);
    if let Some(p) = problem {
        return Err(err(p));
    }

    // The final query over the closed windows.
    let agg_col: HashMap<String, String> =
        aggs.iter().enumerate().map(|(i, a)| (a.text.clone(), format!("__smack_agg{i}"))).collect();
    let rewrite = |e: &mut Expr| {
        let _ = e.visit(&mut Rewrite(|e: &Expr| {
            let text = e.to_string();
            if let Some(c) = agg_col.get(&text).or_else(|| key_text.get(&text)) {
                return Some(Expr::Identifier(Ident::with_quote('"', c.clone())));
            }
            match e {
                Expr::CompoundIdentifier(p) if p.len() == 2 => Some(Expr::Identifier(p[1].clone())),
                _ => None,
            }
        }));
    };
    let mut items: Vec<String> = Vec::new();
    for (e, alias) in &projection {
        let mut new = e.clone();
        rewrite(&mut new);
        let name = match (alias, e) {
            (Some(a), _) => Some(a.to_string()),
            (None, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) => None,
            (None, e) => Some(quoted(&e.to_string())),
        };
        items.push(match name {
            Some(n) => format!("{new} AS {n}"),
            None => new.to_string(),
        });
    }
    items.push(quoted(ORD_COL));
    items.push(format!("\"window_end\" AS {}", quoted(TIME_COL)));
    let mut final_sql = format!("SELECT {} FROM {}", items.join(", "), quoted(WINDOWS_TABLE));
    if let Some(mut h) = having {
        rewrite(&mut h);
        final_sql.push_str(&format!(" WHERE {h}"));
    }

    // The pre-query over each micro-batch.
    let mut pre: Vec<String> = vec![quoted(ROW_COL), format!("{ts} AS {}", quoted(TS_COL))];
    pre.extend(key_exprs.iter().zip(&key_names).map(|(e, n)| format!("{e} AS {}", quoted(n))));
    pre.extend(arg_sql);
    let mut pre_sql = format!("SELECT {} FROM {from}", pre.join(", "));
    if let Some(w) = &select.selection {
        pre_sql.push_str(&format!(" WHERE {w}"));
    }
    Ok(WindowedPlan { input, window, pre_sql, keys: key_names, aggs, final_sql })
}

/// An aggregate call → its kind and, when it takes one, the pre-query item
/// computing its argument (`<expr> AS "__smack_a<i>"`).
fn agg_call(f: &sqlparser::ast::Function, i: usize) -> Result<(AggCall, Option<String>), String> {
    let fname = function_name(f);
    let text = f.to_string();
    let Some(kind) = AGGS.iter().find(|(n, _)| *n == fname).map(|(_, k)| *k) else {
        return Err(format!(
            "`{text}`: {fname} is not kept incrementally in a window; expected COUNT, COUNT(DISTINCT …), SUM, MIN, MAX or AVG"
        ));
    };
    if f.filter.is_some() || f.over.is_some() || f.null_treatment.is_some() {
        return Err(format!("`{text}`: FILTER, OVER and null treatment are not supported in a windowed stage"));
    }
    let (args, distinct) = unnamed_args(f);
    let col = format!("__smack_a{i}");
    match (kind, args.as_slice(), distinct) {
        (AggKind::Count, [FunctionArgExpr::Wildcard], false) => {
            Ok((AggCall { kind: AggKind::CountStar, arg: None, text }, None))
        }
        (AggKind::Count, [FunctionArgExpr::Expr(e)], true) => Ok((
            AggCall { kind: AggKind::CountDistinct, arg: Some(col.clone()), text },
            Some(format!("{e} AS {}", quoted(&col))),
        )),
        (_, [FunctionArgExpr::Expr(e)], false) => {
            Ok((AggCall { kind, arg: Some(col.clone()), text }, Some(format!("{e} AS {}", quoted(&col)))))
        }
        (_, _, true) => Err(format!("`{text}`: DISTINCT is supported in COUNT only")),
        _ => Err(format!("`{text}`: expected one argument")),
    }
}

/// Replaces, top-down, each expression the closure maps to a new one.
struct Rewrite<F: FnMut(&Expr) -> Option<Expr>>(F);

impl<F: FnMut(&Expr) -> Option<Expr>> VisitorMut for Rewrite<F> {
    type Break = ();
    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        if let Some(n) = (self.0)(e) {
            *e = n;
        }
        ControlFlow::Continue(())
    }
}

/// `INTERVAL '1' MINUTE`, `INTERVAL '90 seconds'` → milliseconds.
pub fn interval_ms(e: &Expr) -> Result<i64, String> {
    let Expr::Interval(iv) = e else {
        return Err(format!("expected an INTERVAL, found `{e}`"));
    };
    let text = iv.value.to_string();
    let text = text.trim_matches('\'').trim();
    let (num, unit) = match &iv.leading_field {
        Some(f) => (text.to_string(), field_unit(f).ok_or_else(|| format!("unsupported interval unit in `{e}`"))?),
        None => {
            let mut parts = text.split_whitespace();
            let num = parts.next().unwrap_or("").to_string();
            let unit = parts.next().unwrap_or("").to_lowercase();
            if parts.next().is_some() {
                return Err(format!("expected one number and one unit in `{e}`"));
            }
            (num, unit.trim_end_matches('s').to_string())
        }
    };
    let unit_ms: f64 = match unit.as_str() {
        "millisecond" => 1.0,
        "second" => 1_000.0,
        "minute" => 60_000.0,
        "hour" => 3_600_000.0,
        "day" => 86_400_000.0,
        _ => return Err(format!("expected a unit of milliseconds, seconds, minutes, hours or days in `{e}`")),
    };
    let n: f64 = num.parse().map_err(|_| format!("expected a number in `{e}`"))?;
    let ms = n * unit_ms;
    if !(1.0..1e15).contains(&ms) || ms.fract() != 0.0 {
        return Err(format!("`{e}` must be a whole, positive number of milliseconds"));
    }
    Ok(ms as i64)
}

fn field_unit(f: &DateTimeField) -> Option<String> {
    Some(
        match f {
            DateTimeField::Millisecond | DateTimeField::Milliseconds => "millisecond",
            DateTimeField::Second | DateTimeField::Seconds => "second",
            DateTimeField::Minute | DateTimeField::Minutes => "minute",
            DateTimeField::Hour | DateTimeField::Hours => "hour",
            DateTimeField::Day | DateTimeField::Days => "day",
            _ => return None,
        }
        .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windowed(sql: &str) -> WindowedPlan {
        match plan_stage("s", sql).unwrap() {
            StagePlan::Windowed(w) => w,
            other => panic!("not windowed: {other:?}"),
        }
    }

    #[test]
    fn a_windowed_stage_splits_into_pre_query_state_and_final_query() {
        let w = windowed(
            "SELECT card_id, window_start, window_end, COUNT(*) AS txn_count, SUM(amount) AS total, \
             COUNT(DISTINCT country) AS countries FROM transactions WHERE amount > 0 \
             GROUP BY card_id, HOP(ts, INTERVAL '10' SECOND, INTERVAL '1' MINUTE) \
             HAVING COUNT(*) > 5 OR total > 5000",
        );
        assert_eq!(w.input, "transactions");
        assert_eq!(w.window, WindowFn::Hop { slide: 10_000, size: 60_000 });
        assert_eq!(w.keys, vec!["card_id"]);
        let kinds: Vec<AggKind> = w.aggs.iter().map(|a| a.kind).collect();
        assert_eq!(kinds, vec![AggKind::CountStar, AggKind::Sum, AggKind::CountDistinct]);
        assert_eq!(
            w.pre_sql,
            "SELECT \"__smack_row\", ts AS \"__smack_ts\", card_id AS \"card_id\", amount AS \"__smack_a1\", \
             country AS \"__smack_a2\" FROM transactions WHERE amount > 0"
        );
        assert_eq!(
            w.final_sql,
            "SELECT \"card_id\", window_start, window_end, \"__smack_agg0\" AS txn_count, \"__smack_agg1\" AS total, \
             \"__smack_agg2\" AS countries, \"__smack_ord\", \"window_end\" AS \"__smack_time\" FROM \"__smack_windows\" \
             WHERE \"__smack_agg0\" > 5 OR (\"__smack_agg1\") > 5000"
        );
    }

    #[test]
    fn expression_keys_qualified_names_and_unaliased_aggregates_are_rewritten() {
        let w = windowed(
            "SELECT lower(t.user_id), window_start, max(t.score), avg(score) + 1 AS a \
             FROM events t GROUP BY lower(t.user_id), SESSION(t.ts, INTERVAL '5 minutes')",
        );
        assert_eq!(w.window, WindowFn::Session { gap: 300_000 });
        assert_eq!(w.keys, vec!["__smack_k0"]);
        assert_eq!(
            w.pre_sql,
            "SELECT \"__smack_row\", t.ts AS \"__smack_ts\", lower(t.user_id) AS \"__smack_k0\", \
             t.score AS \"__smack_a0\", score AS \"__smack_a1\" FROM events t"
        );
        assert_eq!(
            w.final_sql,
            "SELECT \"__smack_k0\" AS \"lower(t.user_id)\", window_start, \"__smack_agg0\" AS \"max(t.score)\", \
             \"__smack_agg1\" + 1 AS a, \"__smack_ord\", \"window_end\" AS \"__smack_time\" FROM \"__smack_windows\""
        );
    }

    #[test]
    fn stages_without_a_window_run_per_batch_or_as_a_join() {
        let p = plan_stage("s", "SELECT a, b * 2 AS c FROM src WHERE a > 1").unwrap();
        assert_eq!(p.inputs(), vec!["src"]);
        assert!(matches!(p, StagePlan::PerBatch(_)));
        let p = plan_stage("s", "SELECT i.k FROM imps i LEFT JOIN Clicks c ON i.k = c.k").unwrap();
        assert!(matches!(p, StagePlan::Join(_)));
        assert_eq!(p.inputs(), vec!["imps", "clicks"]);
    }

    #[test]
    fn unsupported_streaming_sql_is_refused_with_the_reason() {
        let e = |sql: &str| plan_stage("s", sql).unwrap_err();
        assert!(e("SELECT k, COUNT(*) FROM t GROUP BY k").contains("GROUP BY without an event-time window"));
        assert!(e("SELECT COUNT(*) FROM t").contains("need an event-time window"));
        assert!(e("SELECT k, median(x) FROM t GROUP BY k, TUMBLE(ts, INTERVAL '1' MINUTE)")
            .contains("median is not kept incrementally"));
        assert!(e("SELECT k, SUM(DISTINCT x) FROM t GROUP BY k, TUMBLE(ts, INTERVAL '1' MINUTE)")
            .contains("DISTINCT is supported in COUNT only"));
        assert!(e("SELECT * FROM t GROUP BY k, TUMBLE(ts, INTERVAL '1' MINUTE)").contains("`*` is not supported"));
        assert!(e("SELECT k FROM a JOIN b ON a.k = b.k GROUP BY k, TUMBLE(ts, INTERVAL '1' MINUTE)")
            .contains("reads one table"));
        assert!(e("SELECT k FROM t GROUP BY k, TUMBLE(ts, INTERVAL '0' SECOND)").contains("positive"));
        assert!(e("SELECT 1").contains("reads no table"));
    }

    #[test]
    fn lookups_are_not_inputs_and_windowed_stages_may_join_them() {
        let cards = vec!["cards".to_string()];
        let sql = "SELECT t.card_id, COUNT(*) AS n FROM tx t LEFT JOIN cards c ON t.card_id = c.card_id \
                   WHERE t.country <> c.home_country GROUP BY t.card_id, TUMBLE(t.ts, INTERVAL '1' MINUTE)";
        let StagePlan::Windowed(w) = plan_stage_with_lookups("s", sql, &cards).unwrap() else { panic!("not windowed") };
        assert_eq!(w.input, "tx");
        assert!(w.pre_sql.contains("FROM tx t LEFT JOIN cards c ON t.card_id = c.card_id"), "{}", w.pre_sql);
        // Without the lookup names the same SQL is a join of two tables, refused.
        assert!(plan_stage("s", sql).unwrap_err().contains("reads one table"));
        let p = plan_stage_with_lookups("s", "SELECT x.a, l.v FROM x JOIN cards l ON l.card_id = x.a", &cards).unwrap();
        assert_eq!(p.inputs(), vec!["x".to_string()]);
        assert!(matches!(p, StagePlan::PerBatch(_)));
        let e = plan_stage_with_lookups(
            "s",
            "SELECT card_id FROM cards GROUP BY card_id, TUMBLE(ts, INTERVAL '1' MINUTE)",
            &cards,
        );
        assert!(e.unwrap_err().contains("reads only lookups"));
    }

    #[test]
    fn the_on_clause_tells_which_input_expression_meets_each_lookup_key() {
        let key = |sql: &str, k: &[&str]| {
            let k: Vec<String> = k.iter().map(|s| s.to_string()).collect();
            lookup_key_exprs("s", sql, "cards", &k)
        };
        assert_eq!(
            key("SELECT * FROM tx t LEFT JOIN cards c ON t.card_id = c.card_id", &["card_id"]).unwrap(),
            vec!["t.card_id"]
        );
        assert_eq!(
            key(
                "SELECT * FROM tx JOIN cards ON (cards.bank = lower(tx.b) AND tx.id = cards.id) AND tx.x > 1",
                &["id", "bank"]
            )
            .unwrap(),
            vec!["tx.id", "lower(tx.b)"]
        );
        assert!(key("SELECT * FROM tx JOIN cards c ON t.card_id > c.card_id", &["card_id"])
            .unwrap_err()
            .contains("does not compare its key `card_id`"));
        assert!(key("SELECT * FROM tx", &["card_id"]).unwrap_err().contains("does not JOIN lookup `cards`"));
    }

    #[test]
    fn the_keys_query_reads_the_input_under_its_alias() {
        let k = vec!["card_id".to_string()];
        let sql = "SELECT * FROM tx t LEFT JOIN cards c ON upper(t.card_id) = c.card_id";
        assert_eq!(
            lookup_keys_sql("s", sql, "cards", &k).unwrap(),
            "SELECT DISTINCT upper(t.card_id) AS \"card_id\" FROM tx t"
        );
    }

    #[test]
    fn intervals_parse_in_both_forms() {
        let iv = |s: &str| match Parser::new(&GenericDialect {}).try_with_sql(s).unwrap().parse_expr() {
            Ok(e) => interval_ms(&e),
            Err(e) => Err(e.to_string()),
        };
        assert_eq!(iv("INTERVAL '1' MINUTE"), Ok(60_000));
        assert_eq!(iv("INTERVAL '10' SECOND"), Ok(10_000));
        assert_eq!(iv("INTERVAL '250 milliseconds'"), Ok(250));
        assert_eq!(iv("INTERVAL '2 hours'"), Ok(7_200_000));
        assert!(iv("INTERVAL '1' YEAR").is_err());
        assert!(iv("5").is_err());
    }
}
