//! `--filter NAME OP VALUE` of `pipe compare`, parsed with the other flags (the command layer
//! applies it to its rows).

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

/// One `--filter NAME OP VALUE`.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub name: String,
    pub op: Op,
    pub value: String,
}

impl std::str::FromStr for Filter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        const OPS: [(&str, Op); 7] = [
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("!=", Op::Ne),
            ("==", Op::Eq),
            ("<", Op::Lt),
            (">", Op::Gt),
            ("=", Op::Eq),
        ];
        let bad = |why: &str| {
            format!(
                "--filter `{s}`: {why} (expected NAME OP VALUE, OP one of < <= > >= = !=, \
                 e.g. lr<0.001, model=b3)"
            )
        };
        let (at, text, op) = OPS
            .iter()
            .filter_map(|(text, op)| s.find(text).map(|at| (at, *text, *op)))
            .min_by_key(|(at, text, _)| (*at, std::cmp::Reverse(text.len())))
            .ok_or_else(|| bad("no comparison"))?;
        let name = s[..at].trim();
        let value = s[at + text.len()..].trim();
        if name.is_empty() || value.is_empty() {
            return Err(bad("a name and a value are needed"));
        }
        if !matches!(op, Op::Eq | Op::Ne) && value.parse::<f64>().is_err() {
            return Err(bad(&format!(
                "`{text}` compares numbers, `{value}` is none"
            )));
        }
        Ok(Filter {
            name: name.into(),
            op,
            value: value.into(),
        })
    }
}
