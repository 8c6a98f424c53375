//! A table of bad run files: each must give exit code 2 and a message naming the line and the
//! key path (issue 2), never a panic, and quickly.

use crate::util::{tiny_mnist, whet};
use std::time::Instant;

struct Case {
    name: &'static str,
    /// Edit of a valid run file.
    text: fn() -> Vec<u8>,
    /// Fragments the message must contain.
    expect: &'static [&'static str],
}

fn replace(from: &str, to: &str) -> Vec<u8> {
    let base = tiny_mnist("");
    assert!(
        base.contains(from),
        "test bug: `{from}` not in the base file"
    );
    base.replacen(from, to, 1).into_bytes()
}

const CASES: &[Case] = &[
    Case {
        name: "unknown key",
        text: || replace("seed: 3", "seed: 3\nsede: 4"),
        expect: &[":3:1", "`sede`", "did you mean `seed`?"],
    },
    Case {
        name: "misspelled op",
        text: || replace("- rotate:", "- rotat:"),
        expect: &[":11:7", "augment.ops[0]", "did you mean `rotate`?"],
    },
    Case {
        name: "wrong type",
        text: || replace("epochs: 3", "epochs: three"),
        expect: &[":20:11", "train.epochs", "invalid u64"],
    },
    Case {
        name: "probability 1.5",
        text: || replace("degrees: 10, p: 0.5", "degrees: 10, p: 1.5"),
        expect: &[":11:33", "augment.ops[0].rotate.p", "[0, 1]"],
    },
    Case {
        name: "negative std",
        text: || replace("std: 0.05", "std: -0.05"),
        expect: &[":12:30", "augment.ops[1].gaussian_noise.std", ">= 0"],
    },
    Case {
        name: "empty op list",
        text: || {
            replace(
                "  ops:\n    - rotate: { degrees: 10, p: 0.5 }\n    - gaussian_noise: { std: 0.05, p: 0.5 }\n",
                "  ops: []\n",
            )
        },
        expect: &[":10:3", "augment.ops", "empty"],
    },
    Case {
        name: "missing data file",
        text: || replace("train-labels-idx1-ubyte.gz", "no-such-labels.gz"),
        expect: &[
            ":5:",
            "data.images.train.idx.labels",
            "no-such-labels.gz",
            "does not exist",
        ],
    },
    Case {
        name: "duplicate key",
        text: || replace("seed: 3", "seed: 3\nseed: 4"),
        expect: &[":3:1", "duplicate"],
    },
    Case {
        name: "alias bomb",
        // The anchors sit under a variant's `set`, which takes any YAML value, so the
        // deserializer really expands them: 10^10 nodes if nothing stopped it.
        text: || {
            let mut s = String::from(
                "ablation:\n  variants:\n    - name: bomb\n      set:\n        a: &a [x,x,x,x,x,x,x,x,x,x]\n",
            );
            for (i, c) in ('b'..='k').enumerate() {
                let p = (b'a' + i as u8) as char;
                s.push_str(&format!(
                    "        {c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
                ));
            }
            tiny_mnist(&s).into_bytes()
        },
        expect: &["alias"],
    },
    Case {
        name: "50 MB file",
        text: || {
            let mut s = tiny_mnist("");
            s.push_str("# ");
            s.push_str(&"x".repeat(50 << 20));
            s.push('\n');
            s.into_bytes()
        },
        expect: &["bytes", "1 MiB"],
    },
    Case {
        name: "invalid UTF-8",
        text: || {
            let mut b = tiny_mnist("").into_bytes();
            let i = b.windows(10).position(|w| w == b"name: tiny").unwrap() + 10;
            b.insert(i, 0xff);
            b
        },
        expect: &[":1:11", "UTF-8"],
    },
];

#[test]
fn bad_run_files_exit_2_with_location_and_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for case in CASES {
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, (case.text)()).unwrap();
        let t = Instant::now();
        let r = whet(dir.path(), &["validate", path.to_str().unwrap()]);
        let secs = t.elapsed().as_secs_f64();
        let msg = &r.stderr;
        if r.code != 2 {
            failures.push(format!("{}: exit {} (want 2)\n{msg}", case.name, r.code));
            continue;
        }
        if msg.contains("panicked") {
            failures.push(format!("{}: panicked\n{msg}", case.name));
        }
        for frag in case.expect {
            if !msg.contains(frag) {
                failures.push(format!("{}: message lacks `{frag}`:\n{msg}", case.name));
            }
        }
        // Hostile files are refused quickly, not by exhausting memory or time.
        if secs > 20.0 {
            failures.push(format!("{}: took {secs:.1}s", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
