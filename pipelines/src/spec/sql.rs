//! The SQL of a stage, checked without a cluster: it parses (errors mapped
//! into the file), names only declared sources, earlier stages and lookups,
//! uses only their columns (for a plain SELECT over one table and the
//! lookups it joins; deeper queries are only parsed), joins a lookup the way
//! the runtime runs it (JOIN or LEFT JOIN from a stage over one input, the
//! ON clause comparing every key column of the lookup with `=`), puts
//! event-time windows in GROUP BY, and keys its state by one of the GROUP BY
//! expressions. Also infers the columns a stage produces.

use super::yaml::{key_pos, value_pos, Cx, Pos};
use indexmap::IndexMap;
use sqlparser::ast::{
    visit_expressions, visit_relations, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident,
    ObjectNamePart, Query, Select, SelectItem, SetExpr, Statement, TableFactor,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Location;
use std::ops::ControlFlow;

/// Window functions, with their argument counts.
pub(crate) const WINDOWS: [(&str, usize, &str); 3] = [
    ("TUMBLE", 2, "TUMBLE(ts, INTERVAL '1' MINUTE)"),
    ("HOP", 3, "HOP(ts, INTERVAL '10' SECOND, INTERVAL '1' MINUTE)"),
    ("SESSION", 2, "SESSION(ts, INTERVAL '5' MINUTE)"),
];

/// Columns a windowed stage may select.
pub(super) const WINDOW_COLUMNS: [&str; 2] = ["window_start", "window_end"];

/// What a stage may read: a source, or a stage declared before it.
pub(super) struct Relation {
    /// `source` or `stage`, for messages.
    pub kind: &'static str,
    /// Its columns, when known.
    pub columns: Option<Vec<String>>,
    /// Its event-time column (sources only).
    pub event_time: Option<String>,
    /// Its key columns (lookups only).
    pub key: Vec<String>,
}

/// A table a query names in FROM or JOIN: its name, its alias, and where
/// the name starts in the SQL.
struct Named {
    table: String,
    alias: Option<String>,
}

/// The columns one table of a query brings, and how the query names it.
struct Scope<'a> {
    /// `` `transactions` ``, or `` lookup `homes` ``, for messages.
    label: String,
    table: &'a str,
    alias: Option<&'a str>,
    columns: Vec<String>,
}

impl Scope<'_> {
    fn named(&self, q: &str) -> bool {
        q == self.table || Some(q) == self.alias
    }
}

/// Maps positions in the SQL text to positions in the file.
struct Origin {
    /// Where SQL line 1, column 1 is.
    start: Pos,
    /// For a block scalar (`sql: |`), every line is indented this much.
    block_indent: Option<usize>,
}

impl Origin {
    fn find(cx: &Cx, root: &marked_yaml::Node, path: &[&str]) -> Origin {
        let key = key_pos(root, path);
        let line = cx.line_text(key.line);
        let after_key = line.get(key.column.saturating_sub(1)..).unwrap_or("");
        let after_colon = after_key.split_once(':').map(|(_, r)| r.trim_start()).unwrap_or("");
        if after_colon.starts_with('|') || after_colon.starts_with('>') {
            let indent = (key.line + 1..)
                .take_while(|l| *l <= cx.text.lines().count())
                .map(|l| cx.line_text(l))
                .find(|t| !t.trim().is_empty())
                .map(|t| t.len() - t.trim_start().len())
                .unwrap_or(0);
            return Origin { start: Pos { line: key.line + 1, column: indent + 1 }, block_indent: Some(indent) };
        }
        let mut start = value_pos(root, path);
        let at = cx.line_text(start.line).chars().nth(start.column.saturating_sub(1));
        if matches!(at, Some('"' | '\'')) {
            start.column += 1;
        }
        Origin { start, block_indent: None }
    }

    fn map(&self, loc: Location) -> Pos {
        let (l, c) = (loc.line as usize, loc.column as usize);
        if l == 0 {
            return self.start;
        }
        match self.block_indent {
            Some(indent) => Pos { line: self.start.line + l - 1, column: indent + c },
            None if l == 1 => Pos { line: self.start.line, column: self.start.column + c - 1 },
            None => Pos { line: self.start.line + l - 1, column: c },
        }
    }
}

/// An identifier as DataFusion resolves it: unquoted ones are lowercased.
pub(crate) fn norm(i: &Ident) -> String {
    match i.quote_style {
        None => i.value.to_lowercase(),
        Some(_) => i.value.clone(),
    }
}

pub(crate) fn window_fn(e: &Expr) -> Option<(&'static str, usize, &'static str, &sqlparser::ast::Function)> {
    let Expr::Function(f) = e else { return None };
    let name = match f.name.0.last()? {
        ObjectNamePart::Identifier(i) => i.value.to_uppercase(),
        _ => return None,
    };
    WINDOWS.iter().find(|(w, _, _)| *w == name).map(|(w, n, ex)| (*w, *n, *ex, f))
}

/// Checks a stage's SQL; returns the columns it produces, when inferable.
pub(super) struct StageSql<'a> {
    pub name: &'a str,
    pub sql: &'a str,
    pub key: Option<&'a str>,
    /// Sources and the stages declared before this one.
    pub readable: &'a IndexMap<String, Relation>,
    /// Stages declared after this one (and itself), for a clearer message.
    pub later: &'a [String],
}

impl StageSql<'_> {
    pub(super) fn check(&self, cx: &mut Cx, root: &marked_yaml::Node) -> Option<Vec<String>> {
        let sql_path = ["stages", self.name, "sql"];
        let field = sql_path.join(".");
        let origin = Origin::find(cx, root, &sql_path);
        let stmts = match Parser::parse_sql(&GenericDialect {}, self.sql) {
            Ok(s) => s,
            Err(e) => {
                let text = e.to_string();
                let text = text.strip_prefix("sql parser error: ").unwrap_or(&text).to_string();
                let (msg, pos) = match text.rfind(" at Line: ") {
                    Some(i) => {
                        let loc = parse_location(&text[i + " at Line: ".len()..]);
                        (text[..i].to_string(), loc.map(|l| origin.map(l)))
                    }
                    None => (text.clone(), None),
                };
                cx.err(pos.unwrap_or(origin.start), &field, format!("SQL does not parse: {msg}"));
                return None;
            }
        };
        let [stmt] = stmts.as_slice() else {
            cx.err(origin.start, &field, format!("expected one SELECT statement, found {}", stmts.len()));
            return None;
        };
        let Statement::Query(q) = stmt else {
            cx.err(origin.start, &field, "expected a SELECT query");
            return None;
        };
        let ok = self.check_tables(cx, &origin, &field, q);
        let SetExpr::Select(select) = q.body.as_ref() else {
            return None;
        };
        let ok = ok && self.check_lookups(cx, &origin, &field, q, select);
        let from = self.input_and_lookups(select).filter(|_| q.with.is_none());
        let relation = from.as_ref().and_then(|(t, _)| self.readable.get(&t.table));
        let windowed = self.check_windows(cx, &origin, &field, select, relation);
        self.check_key(cx, root, select);
        if !ok {
            return None;
        }
        let (input, lookups) = from?;
        let columns = relation?.columns.as_ref()?;
        let mut known: Vec<String> = columns.clone();
        if windowed {
            known.extend(WINDOW_COLUMNS.iter().map(|s| s.to_string()));
        }
        let mut scopes = vec![Scope {
            label: format!("`{}`", input.table),
            table: &input.table,
            alias: input.alias.as_deref(),
            columns: known,
        }];
        for l in &lookups {
            let columns = self.readable.get(&l.table).and_then(|r| r.columns.clone()).unwrap_or_default();
            scopes.push(Scope {
                label: format!("lookup `{}`", l.table),
                table: &l.table,
                alias: l.alias.as_deref(),
                columns,
            });
        }
        if simple(q) {
            self.check_columns(cx, &origin, &field, select, &scopes);
        }
        let mut all: Vec<String> = scopes[0].columns.clone();
        all.extend(scopes[1..].iter().flat_map(|s| s.columns.iter().cloned()));
        output_columns(select, &scopes[0].columns, &all)
    }

    /// The one table a SELECT reads and the lookups it joins (no other
    /// joins), each with its alias.
    fn input_and_lookups(&self, select: &Select) -> Option<(Named, Vec<Named>)> {
        let [from] = select.from.as_slice() else {
            return None;
        };
        let input = table_factor(&from.relation)?;
        let mut lookups = Vec::new();
        for j in &from.joins {
            let t = table_factor(&j.relation)?;
            if self.readable.get(&t.table).is_none_or(|r| r.kind != "lookup") {
                return None;
            }
            lookups.push(t);
        }
        Some((input, lookups))
    }

    /// Joins to lookups: from a stage over one input (a source or an
    /// earlier stage), with JOIN or LEFT JOIN, ON comparing every key
    /// column of the lookup with `=` to an expression of the input.
    fn check_lookups(&self, cx: &mut Cx, origin: &Origin, field: &str, q: &Query, select: &Select) -> bool {
        let is_lookup = |t: &str| self.readable.get(t).is_some_and(|r| r.kind == "lookup");
        let mut ok = true;
        let mut inputs: Vec<String> = Vec::new();
        let mut joined: Vec<(String, Location)> = Vec::new();
        let _ = visit_relations(q, |name| {
            if let Some(ObjectNamePart::Identifier(i)) = name.0.last() {
                let t = norm(i);
                if is_lookup(&t) {
                    joined.push((t, i.span.start));
                } else if !inputs.contains(&t) {
                    inputs.push(t);
                }
            }
            ControlFlow::<()>::Continue(())
        });
        if joined.is_empty() {
            return true;
        }
        for from in &select.from {
            if let Some(t) = relation_ident(&from.relation).filter(|i| is_lookup(&norm(i))) {
                ok = false;
                cx.err(
                    origin.map(t.span.start),
                    field,
                    format!(
                        "`{}` is a lookup: its rows are read by key for the input's rows; FROM names the stage's input (a source or an earlier stage) and `LEFT JOIN {} ON …` the lookup",
                        norm(t),
                        norm(t)
                    ),
                );
            }
        }
        if inputs.len() > 1 {
            let (t, at) = &joined[0];
            cx.err(
                origin.map(*at),
                field,
                format!(
                    "a stage over several inputs ({}) cannot join lookup `{t}`; join it in a stage over one input",
                    inputs.join(", ")
                ),
            );
            return false;
        }
        let mut seen: Vec<String> = Vec::new();
        for (t, at) in &joined {
            if seen.contains(t) {
                ok = false;
                cx.err(origin.map(*at), field, format!("lookup `{t}` is joined twice; join it once"));
                continue;
            }
            seen.push(t.clone());
            let key = self.readable.get(t).map(|r| r.key.clone()).unwrap_or_default();
            if let Err(m) = crate::runtime::plan::lookup_key_exprs(self.name, self.sql, t, &key) {
                ok = false;
                let m = m.strip_prefix(&format!("stage {}: ", self.name)).unwrap_or(&m).to_string();
                let e = cx.err(origin.map(*at), field, m);
                e.hint = Some(format!("e.g. `LEFT JOIN {t} ON <input>.{} = {t}.{}`", key.join(", "), key.join(", ")));
            }
        }
        ok
    }

    /// FROM and JOIN name sources, earlier stages or lookups (or the query's CTEs).
    fn check_tables(&self, cx: &mut Cx, origin: &Origin, field: &str, q: &Query) -> bool {
        let ctes: Vec<String> = q.with.iter().flat_map(|w| w.cte_tables.iter().map(|c| norm(&c.alias.name))).collect();
        let mut ok = true;
        let _ = visit_relations(q, |name| {
            let parts: Vec<&Ident> = name
                .0
                .iter()
                .filter_map(|p| match p {
                    ObjectNamePart::Identifier(i) => Some(i),
                    _ => None,
                })
                .collect();
            let Some(first) = parts.first() else {
                return ControlFlow::<()>::Continue(());
            };
            let pos = origin.map(first.span.start);
            if parts.len() != 1 {
                ok = false;
                cx.err(
                    pos,
                    field,
                    format!("unknown table `{name}`: tables are source and stage names, without a schema"),
                );
                return ControlFlow::Continue(());
            }
            let t = norm(first);
            if ctes.contains(&t) || self.readable.contains_key(&t) {
                return ControlFlow::Continue(());
            }
            ok = false;
            if t == self.name {
                cx.err(pos, field, format!("stage `{t}` cannot read itself"));
            } else if self.later.contains(&t) {
                cx.err(
                    pos,
                    field,
                    format!(
                        "stage `{t}` is declared after `{}`; a stage reads sources and the stages above it",
                        self.name
                    ),
                );
            } else {
                let names: Vec<&str> = self.readable.keys().map(String::as_str).collect();
                let e = cx.err(
                    pos,
                    field,
                    format!(
                        "unknown table `{t}`, expected a source or an earlier stage: {}",
                        super::decode::quoted(&names)
                    ),
                );
                e.hint = closest(&t, &names).map(|c| format!("did you mean `{c}`?"));
            }
            ControlFlow::Continue(())
        });
        ok
    }

    /// Window functions: in GROUP BY only, one at most, on the event time.
    /// Returns whether the stage is windowed.
    fn check_windows(
        &self,
        cx: &mut Cx,
        origin: &Origin,
        field: &str,
        select: &Select,
        input: Option<&Relation>,
    ) -> bool {
        let mut misplaced: Vec<(&'static str, Location)> = Vec::new();
        let mut find = |e: &Expr| {
            let _ = visit_expressions(e, |e| {
                if let Some((w, _, _, f)) = window_fn(e) {
                    misplaced.push((w, name_loc(f)));
                }
                ControlFlow::<()>::Continue(())
            });
        };
        for item in &select.projection {
            match item {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => find(e),
                _ => {}
            }
        }
        select.selection.iter().chain(select.having.iter()).for_each(find);
        for (w, loc) in misplaced {
            cx.err(
                origin.map(loc),
                field,
                format!("`{w}` belongs in GROUP BY; select `window_start` and `window_end` instead"),
            );
        }
        let GroupByExpr::Expressions(exprs, _) = &select.group_by else {
            return false;
        };
        let mut windowed = false;
        for e in exprs {
            let Some((w, arity, example, f)) = window_fn(e) else {
                continue;
            };
            let name_pos = origin.map(name_loc(f));
            if windowed {
                cx.err(name_pos, field, "only one window per stage");
                continue;
            }
            windowed = true;
            let args: Vec<&Expr> = match &f.args {
                FunctionArguments::List(l) => l
                    .args
                    .iter()
                    .filter_map(|a| match a {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            let intervals_ok = args.iter().skip(1).all(|a| matches!(a, Expr::Interval(_)));
            if args.len() != arity || !intervals_ok {
                cx.err(
                    name_pos,
                    field,
                    format!(
                        "expected `{example}`: the event-time column, then {} INTERVAL{}",
                        arity - 1,
                        if arity > 2 { "s (slide, size)" } else { "" }
                    ),
                );
                continue;
            }
            let Some(input) = input.filter(|r| r.kind == "source") else {
                continue;
            };
            let ts = match args[0] {
                Expr::Identifier(i) => Some(i),
                Expr::CompoundIdentifier(p) => p.last(),
                _ => None,
            };
            match (&input.event_time, ts) {
                (None, _) => {
                    cx.err(
                        name_pos,
                        field,
                        format!("`{w}` runs on event time, but the source declares no `event-time`"),
                    );
                }
                (Some(et), Some(ts)) if norm(ts) != *et => {
                    cx.err(
                        origin.map(ts.span.start),
                        field,
                        format!("`{w}` runs on the source's event time: expected `{et}`, found `{}`", ts.value),
                    );
                }
                (Some(et), None) => {
                    cx.err(
                        name_pos,
                        field,
                        format!("`{w}` runs on the source's event time: expected `{et}` as its first argument"),
                    );
                }
                _ => {}
            }
        }
        windowed
    }

    /// A stage with GROUP BY keys its state by one of the GROUP BY columns.
    fn check_key(&self, cx: &mut Cx, root: &marked_yaml::Node, select: &Select) {
        let GroupByExpr::Expressions(exprs, _) = &select.group_by else {
            return;
        };
        if exprs.is_empty() {
            return;
        }
        let cols: Vec<String> = exprs
            .iter()
            .filter_map(|e| match e {
                Expr::Identifier(i) => Some(norm(i)),
                Expr::CompoundIdentifier(p) => p.last().map(norm),
                _ => None,
            })
            .collect();
        let listed: Vec<String> = exprs.iter().map(|e| format!("`{e}`")).collect();
        match self.key {
            None => {
                let e = cx.err(
                    key_pos(root, &["stages", self.name]),
                    &format!("stages.{}", self.name),
                    format!("a stage with GROUP BY needs `key`: one of the GROUP BY columns ({})", listed.join(", ")),
                );
                if let Some(c) = cols.first() {
                    e.hint = Some(format!("add `key: {c}`"));
                }
            }
            Some(k) if !cols.iter().any(|c| c == k) => {
                let path = ["stages", self.name, "key"];
                cx.err(
                    value_pos(root, &path),
                    &path.join("."),
                    format!("key `{k}` is not among the GROUP BY expressions ({}); the key partitions the stage's state, so it must be grouped by", listed.join(", ")),
                );
            }
            Some(_) => {}
        }
    }

    /// Every column named in the SELECT list, WHERE, GROUP BY and HAVING
    /// exists in the one input table (the first scope) or a lookup it
    /// joins; a column two of them have is written with its table.
    fn check_columns(&self, cx: &mut Cx, origin: &Origin, field: &str, select: &Select, scopes: &[Scope]) {
        let aliases: Vec<String> = select
            .projection
            .iter()
            .filter_map(|i| match i {
                SelectItem::ExprWithAlias { alias, .. } => Some(norm(alias)),
                _ => None,
            })
            .collect();
        let tables: Vec<String> = scopes.iter().map(|s| format!("`{}`", s.table)).collect();
        let check = |cx: &mut Cx, e: &Expr, allow_aliases: bool| {
            let _ = visit_expressions(e, |e| {
                let (ident, scope): (Option<&Ident>, Option<&Scope>) = match e {
                    Expr::Identifier(i) => (Some(i), None),
                    Expr::CompoundIdentifier(p) if p.len() == 2 => {
                        let q = norm(&p[0]);
                        if let Some(s) = scopes.iter().find(|s| s.named(&q)) {
                            (Some(&p[1]), Some(s))
                        } else if scopes.iter().any(|s| s.columns.contains(&q)) {
                            (None, None) // a struct field
                        } else {
                            cx.err(
                                origin.map(p[0].span.start),
                                field,
                                format!("unknown table `{}`: this query reads {}", p[0].value, tables.join(" and ")),
                            );
                            (None, None)
                        }
                    }
                    _ => (None, None),
                };
                let Some(i) = ident else { return ControlFlow::<()>::Continue(()) };
                let c = norm(i);
                let having: Vec<&Scope> = match scope {
                    Some(s) => vec![s].into_iter().filter(|s| s.columns.contains(&c)).collect(),
                    None => scopes.iter().filter(|s| s.columns.contains(&c)).collect(),
                };
                if having.len() > 1 {
                    let names: Vec<String> = having.iter().map(|s| s.label.clone()).collect();
                    let e = cx.err(
                        origin.map(i.span.start),
                        field,
                        format!("column `{}` is ambiguous: both {} have it", i.value, names.join(" and ")),
                    );
                    let q = having[0].alias.unwrap_or(having[0].table);
                    e.hint = Some(format!("write `{q}.{}`", i.value));
                } else if having.is_empty() && !(scope.is_none() && allow_aliases && aliases.contains(&c)) {
                    let among: Vec<&Scope> = match scope {
                        Some(s) => vec![s],
                        None => scopes.iter().collect(),
                    };
                    let names: Vec<&str> = among.iter().flat_map(|s| s.columns.iter().map(String::as_str)).collect();
                    let what = among.iter().map(|s| s.label.as_str()).collect::<Vec<_>>().join(" or ");
                    let e = cx.err(
                        origin.map(i.span.start),
                        field,
                        format!(
                            "unknown column `{}` in {what}, which {} {}",
                            i.value,
                            if among.len() == 1 { "has" } else { "have" },
                            super::decode::quoted(&names)
                        ),
                    );
                    e.hint = closest(&c, &names).map(|c| format!("did you mean `{c}`?"));
                }
                ControlFlow::<()>::Continue(())
            });
        };
        for item in &select.projection {
            match item {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => check(cx, e, false),
                _ => {}
            }
        }
        if let Some(w) = &select.selection {
            check(cx, w, false);
        }
        if let GroupByExpr::Expressions(exprs, _) = &select.group_by {
            for e in exprs {
                check(cx, e, true);
            }
        }
        if let Some(h) = &select.having {
            check(cx, h, true);
        }
    }
}

/// `Line: 3, Column: 14` → a location.
fn parse_location(s: &str) -> Option<Location> {
    let (line, rest) = s.split_once(", Column: ")?;
    let col: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    Some(Location { line: line.trim().parse().ok()?, column: col.parse().ok()? })
}

/// A table in FROM or JOIN, with its alias.
fn table_factor(t: &TableFactor) -> Option<Named> {
    let TableFactor::Table { name, alias, .. } = t else {
        return None;
    };
    let [ObjectNamePart::Identifier(i)] = name.0.as_slice() else {
        return None;
    };
    Some(Named { table: norm(i), alias: alias.as_ref().map(|a| norm(&a.name)) })
}

/// The name of a plain table in FROM or JOIN.
fn relation_ident(t: &TableFactor) -> Option<&Ident> {
    let TableFactor::Table { name, .. } = t else {
        return None;
    };
    match name.0.last() {
        Some(ObjectNamePart::Identifier(i)) => Some(i),
        _ => None,
    }
}

/// No subqueries or lambdas, whose names have their own scopes.
fn simple(q: &Query) -> bool {
    visit_expressions(q, |e| match e {
        Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } | Expr::Lambda(_) => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_continue()
}

/// The columns a SELECT produces, when every item has a name (`*` is the
/// input's columns, `lookup.*` too when the query joins lookups: `all`).
fn output_columns(select: &Select, input: &[String], all: &[String]) -> Option<Vec<String>> {
    let joins = select.from.first().is_some_and(|f| !f.joins.is_empty());
    let input = if joins { all } else { input };
    let mut out = Vec::new();
    for item in &select.projection {
        match item {
            SelectItem::UnnamedExpr(Expr::Identifier(i)) => out.push(norm(i)),
            SelectItem::UnnamedExpr(Expr::CompoundIdentifier(p)) => out.push(norm(p.last()?)),
            SelectItem::ExprWithAlias { alias, .. } => out.push(norm(alias)),
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                out.extend(input.iter().filter(|c| !WINDOW_COLUMNS.contains(&c.as_str())).cloned())
            }
            _ => return None,
        }
    }
    Some(out)
}

/// The name nearest to `s` (edit distance at most 2), for a hint.
pub(super) fn closest<'a>(s: &str, names: &[&'a str]) -> Option<&'a str> {
    names.iter().map(|n| (edit_distance(s, n), *n)).filter(|(d, _)| *d <= 2).min().map(|(_, n)| n)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Where a function's name starts.
fn name_loc(f: &sqlparser::ast::Function) -> Location {
    match f.name.0.first() {
        Some(ObjectNamePart::Identifier(i)) => i.span.start,
        _ => Location { line: 0, column: 0 },
    }
}
