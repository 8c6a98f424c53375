//! Hostile paths and names (issue 14, classes 1 and 2): names that would lead a write outside
//! `--out` are refused at `validate` with their line and key; an output that equals, contains or
//! lies inside an input is refused before any work; whet's own output folders are never read as
//! classes; awkward class names survive an export and a reload without merging.
//!
//! Every refusal must exit 2, name the file and the place, and leave the whole case folder byte
//! for byte as it was (nothing written anywhere, no input changed).

use crate::catalogue::{
    MAIN, STEPS, TARGET, good_csv, image_folder, img_run, png, snapshot, tab_run, write,
};
use crate::util::whet;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The case folder's files and folders, without the stage cache.
fn files(d: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut s = snapshot(d);
    s.retain(|p, _| !p.starts_with(d.join(".cache")));
    s
}

fn arg(p: &Path) -> String {
    p.display().to_string()
}

/// Runs `whet ARGS` in `d`, expects exit 2 with every fragment in the output, no panic, and
/// nothing changed in `d`.
fn refused(d: &Path, args: &[String], expect: &[&str]) -> Result<(), String> {
    let before = files(d);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = whet(d, &argv);
    let all = format!("{}{}", r.stderr, r.stdout);
    let mut problems = Vec::new();
    if r.code != 2 {
        problems.push(format!("exit {} instead of 2", r.code));
    }
    if all.contains("panicked") {
        problems.push("panicked".into());
    }
    for e in expect {
        if !all.contains(e) {
            problems.push(format!("missing `{e}`"));
        }
    }
    let after = files(d);
    let changed: Vec<_> = before
        .keys()
        .chain(after.keys())
        .filter(|p| before.get(*p) != after.get(*p))
        .collect();
    if !changed.is_empty() {
        problems.push(format!("changed: {changed:?}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "whet {}: {}\n{all}",
            args.join(" "),
            problems.join("; ")
        ))
    }
}

/// A table run file `data/run.yaml` over `data/main.csv`, with `extra` appended (line 19 on).
fn table_case(d: &Path, extra: &str) -> PathBuf {
    let data = d.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write(&data, "main.csv", good_csv(60));
    write(&data, "run.yaml", tab_run(MAIN, TARGET, STEPS) + extra);
    data.join("run.yaml")
}

/// An image run file `data/run.yaml` over the class folders `data/imgs/{a,b}`.
fn image_case(d: &Path) -> PathBuf {
    let data = d.join("data");
    std::fs::create_dir_all(&data).unwrap();
    image_folder(&data, &[]);
    write(
        &data,
        "run.yaml",
        img_run("{ folder: { path: imgs, width: 8, height: 8 } }"),
    );
    data.join("run.yaml")
}

/// A variant section (lines 19 to 22: the name is on line 22, column 7).
fn variant(name_yaml: &str, rest: &str) -> String {
    format!("ablation:\n  seeds: 1\n  variants:\n    - name: {name_yaml}\n      {rest}\n")
}

struct NameCase {
    name: &'static str,
    /// The text appended to the table run file.
    extra: fn(&Path) -> String,
    /// Fragments of the message of `validate` and `ablate`.
    expect: &'static [&'static str],
}

const NAME_CASES: &[NameCase] = &[
    NameCase {
        name: "variant climbing out with ..",
        extra: |_| variant("\"../../../x\"", "set: { train.epochs: 2 }"),
        expect: &[
            "run.yaml:22:7",
            "ablation.variants[0].name",
            "separator `/`",
        ],
    },
    NameCase {
        name: "variant named by an absolute path",
        extra: |d| {
            variant(
                &format!("\"{}\"", d.join("abs/path").display()),
                "set: { train.epochs: 2 }",
            )
        },
        expect: &[
            "run.yaml:22:7",
            "ablation.variants[0].name",
            "separator `/`",
        ],
    },
    NameCase {
        name: "variant with a backslash",
        extra: |_| variant("'a\\b'", "set: { train.epochs: 2 }"),
        expect: &["run.yaml:22:7", "separator `\\`"],
    },
    NameCase {
        name: "grid template that resolves to ..",
        extra: |_| variant("\"{description}\"", "grid: { description: [\"..\", ok] }"),
        expect: &["run.yaml:22:7", "ablation.variants[0].name", "`..`"],
    },
    NameCase {
        name: "grid template that resolves to a path",
        extra: |_| {
            variant(
                "\"d={description}\"",
                "grid: { description: [\"x/../../y\"] }",
            )
        },
        expect: &["run.yaml:22:7", "`d=x/../../y`", "separator"],
    },
    NameCase {
        name: "variant name with NUL",
        extra: |_| variant("\"a\\0b\"", "set: { train.epochs: 2 }"),
        expect: &["run.yaml:22:7", "U+0000"],
    },
    NameCase {
        name: "variant name with a newline",
        extra: |_| variant("\"a\\nb\"", "set: { train.epochs: 2 }"),
        expect: &["run.yaml:22:7", "a\\nb", "U+000A"],
    },
    NameCase {
        name: "variant name of 201 bytes",
        extra: |_| variant(&"v".repeat(201), "set: { train.epochs: 2 }"),
        expect: &["run.yaml:22:7", "201 bytes", "limit is 200"],
    },
    NameCase {
        name: "variant renaming the run to a path",
        extra: |_| variant("ok", "set: { name: ../escape }"),
        expect: &[
            "run.yaml:1:",
            "`name`",
            "separator",
            "ablation variant `ok`",
        ],
    },
    NameCase {
        name: "second of two variants",
        extra: |_| {
            variant("fine", "set: { train.epochs: 2 }")
                + "    - name: \"..\"\n      set: { train.epochs: 3 }\n"
        },
        expect: &["run.yaml:24:7", "ablation.variants[1].name", "`..`"],
    },
];

#[test]
fn names_that_would_leave_out_are_refused_at_validate() {
    let root = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (k, case) in NAME_CASES.iter().enumerate() {
        let d = root.path().join(format!("case-{k}"));
        std::fs::create_dir_all(&d).unwrap();
        let run = table_case(&d, &(case.extra)(&d));
        for args in [
            vec!["validate".into(), arg(&run)],
            vec![
                "ablate".into(),
                arg(&run),
                "--out".into(),
                arg(&d.join("out")),
            ],
        ] {
            if let Err(e) = refused(&d, &args, case.expect) {
                failures.push(format!("{}: {e}", case.name));
            }
        }
        assert!(!d.join("abs").exists() && !root.path().join("x").exists());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn run_and_table_names_are_checked_too() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path().join("work");
    std::fs::create_dir_all(&d).unwrap();
    let run = table_case(&d, "");
    // The default output folder would be `runs/../../escape`, outside the working folder.
    let before = files(root.path());
    let r = whet(&d, &["run", &arg(&run), "--set", "name=../../escape"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("run.yaml:1:") && r.stderr.contains("`name`"),
        "{}",
        r.stderr
    );
    assert_eq!(before, files(root.path()), "written by a refused run");
    assert!(!root.path().join("escape").exists());

    let long = "n".repeat(201);
    let text = tab_run(MAIN, TARGET, STEPS).replacen("name: cat", &format!("name: {long}"), 1);
    write(&d.join("data"), "long.yaml", &text);
    let r = refused(
        &d,
        &["validate".into(), arg(&d.join("data/long.yaml"))],
        &["long.yaml:1:1", "201 bytes"],
    );
    assert!(r.is_ok(), "{r:?}");
    // 200 bytes is a valid name.
    let text = tab_run(MAIN, TARGET, STEPS).replacen(
        "name: cat",
        &format!("name: {}", "n".repeat(200)),
        1,
    );
    write(&d.join("data"), "ok.yaml", &text);
    let r = whet(&d, &["validate", &arg(&d.join("data/ok.yaml"))]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    let text = tab_run("    a/b: main.csv", TARGET, STEPS).replacen("main: main", "main: a/b", 1);
    write(&d.join("data"), "table.yaml", &text);
    let r = refused(
        &d,
        &["validate".into(), arg(&d.join("data/table.yaml"))],
        &[
            "table.yaml:5:5",
            "data.tables.a/b",
            "table name",
            "separator",
        ],
    );
    assert!(r.is_ok(), "{r:?}");
}

struct OutCase {
    name: &'static str,
    /// Makes the inputs in the case folder and returns the arguments after `whet`.
    setup: fn(&Path) -> Vec<String>,
    expect: &'static [&'static str],
}

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

const OUT_CASES: &[OutCase] = &[
    OutCase {
        name: "export --out = the dataset folder (CSV untouched)",
        setup: |d| {
            let run = table_case(d, "");
            let out = arg(&d.join("data"));
            args(&["export", &arg(&run), "--out", &out, "--format", "csv"])
        },
        expect: &["contains the input", "main.csv", "data.tables.main"],
    },
    OutCase {
        name: "export --out = the image root",
        setup: |d| {
            let run = image_case(d);
            let out = arg(&d.join("data/imgs"));
            args(&["export", &arg(&run), "--out", &out])
        },
        expect: &["is the input", "data.images.train.folder.path"],
    },
    OutCase {
        name: "run --out inside the image root",
        setup: |d| {
            let run = image_case(d);
            let out = arg(&d.join("data/imgs/run-1"));
            args(&["run", &arg(&run), "--out", &out])
        },
        expect: &["lies inside the input", "imgs"],
    },
    OutCase {
        name: "run --out inside a class folder, given with ..",
        setup: |d| {
            let run = image_case(d);
            let out = arg(&d.join("elsewhere/../data/imgs/a/new"));
            args(&["run", &arg(&run), "--out", &out])
        },
        expect: &["lies inside the input", "resolved"],
    },
    OutCase {
        name: "run --out = a symlink to the image folder",
        setup: |d| {
            let run = image_case(d);
            std::os::unix::fs::symlink(d.join("data/imgs"), d.join("link")).unwrap();
            args(&["run", &arg(&run), "--out", &arg(&d.join("link"))])
        },
        expect: &["is the input", "resolved", "link"],
    },
    OutCase {
        name: "run --out = a dangling symlink into the image folder",
        setup: |d| {
            let run = image_case(d);
            std::os::unix::fs::symlink(d.join("data/imgs/new-class"), d.join("dangling")).unwrap();
            args(&["run", &arg(&run), "--out", &arg(&d.join("dangling"))])
        },
        expect: &["lies inside the input", "dangling"],
    },
    OutCase {
        name: "run --out = the input CSV",
        setup: |d| {
            let run = table_case(d, "");
            args(&["run", &arg(&run), "--out", &arg(&d.join("data/main.csv"))])
        },
        expect: &["main.csv", "is an existing file"],
    },
    OutCase {
        name: "run --out = a folder holding the run file",
        setup: |d| {
            let data = d.join("data");
            std::fs::create_dir_all(&data).unwrap();
            write(&data, "main.csv", good_csv(60));
            let conf = d.join("conf");
            std::fs::create_dir_all(&conf).unwrap();
            write(
                &conf,
                "run.yaml",
                tab_run("    main: ../data/main.csv", TARGET, STEPS),
            );
            args(&["run", &arg(&conf.join("run.yaml")), "--out", &arg(&conf)])
        },
        expect: &["contains the input", "the run file"],
    },
    OutCase {
        name: "run --out = the folder above the data",
        setup: |d| {
            let run = table_case(d, "");
            args(&["run", &arg(&run), "--out", &arg(d)])
        },
        expect: &["contains the input"],
    },
    OutCase {
        name: "ablate --out = the dataset folder",
        setup: |d| {
            let run = table_case(d, "");
            args(&["ablate", &arg(&run), "--out", &arg(&d.join("data"))])
        },
        expect: &["contains the input", "main.csv"],
    },
    OutCase {
        name: "ablate --out = the folder a variant's data lives in",
        setup: |d| {
            let run = table_case(
                d,
                &variant("other", "set: { data.tables.main: ../other/main.csv }"),
            );
            let other = d.join("other");
            std::fs::create_dir_all(&other).unwrap();
            write(&other, "main.csv", good_csv(60));
            args(&["ablate", &arg(&run), "--out", &arg(&other)])
        },
        expect: &["contains the input", "other"],
    },
    OutCase {
        name: "apply --out = the folder of the data file",
        setup: |d| {
            table_case(d, "");
            write(&d.join("data"), "manifest.json", "{}");
            let m = arg(&d.join("data/manifest.json"));
            let data = arg(&d.join("data/main.csv"));
            args(&["apply", &m, &data, "--out", &arg(&d.join("data"))])
        },
        expect: &["contains the input", "main.csv", "the data file"],
    },
    OutCase {
        name: "preview --out inside a class folder",
        setup: |d| {
            let run = image_case(d);
            let out = arg(&d.join("data/imgs/a/preview.png"));
            args(&["preview", &arg(&run), "--out", &out])
        },
        expect: &["lies inside the input", "preview.png"],
    },
    OutCase {
        name: "preview --out = an input image",
        setup: |d| {
            let run = image_case(d);
            let out = arg(&d.join("data/imgs/a/00.png"));
            args(&["preview", &arg(&run), "--out", &out])
        },
        expect: &["lies inside the input", "00.png"],
    },
];

#[test]
fn outputs_that_overlap_inputs_are_refused_before_any_work() {
    let root = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (k, case) in OUT_CASES.iter().enumerate() {
        let d = root.path().join(format!("case-{k}"));
        std::fs::create_dir_all(&d).unwrap();
        let args = (case.setup)(&d);
        if let Err(e) = refused(&d, &args, case.expect) {
            failures.push(format!("{}: {e}", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A run's output moved into an image root (as a user might, or written there before outputs
/// were checked) is skipped with a warning, not trained on as a third class.
#[test]
fn output_folders_inside_an_image_root_are_not_classes() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    let run = image_case(d);
    let first = d.join("first");
    let r = whet(d, &["run", &arg(&run), "--out", &arg(&first)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(first.join(".whet-output").is_file());
    std::fs::rename(&first, d.join("data/imgs/first")).unwrap();
    let second = d.join("second");
    let r = whet(d, &["run", &arg(&run), "--out", &arg(&second)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("warning: skipped") && r.stderr.contains("imgs/first"),
        "{}",
        r.stderr
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(second.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["data"]["images"]["classes"],
        serde_json::json!(["a", "b"]),
        "{manifest}"
    );
}

/// Class folders whose names cannot be written as they are: exported under distinct encoded
/// folders, loaded back under their exact names, and stable through a second export.
#[test]
fn awkward_class_names_round_trip_through_export() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    let imgs = d.join("data/imgs");
    // Source folder → class name: a folder name that is exactly an encoding is decoded
    // (`x%255Cy` is the class `x%5Cy`), any other is taken as it is.
    let sources = [
        ("1", "1"),
        ("x\\y", "x\\y"),
        ("x%255Cy", "x%5Cy"),
        (".hidden", ".hidden"),
        ("a%b", "a%b"),
        ("new\nline", "new\nline"),
        ("ü", "ü"),
    ];
    for (folder, _) in sources {
        let dir = imgs.join(folder);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..3 {
            std::fs::write(dir.join(format!("{i}.png")), png(8, 8, 1)).unwrap();
        }
    }
    let text = img_run("{ folder: { path: imgs, width: 8, height: 8 } }");
    write(&d.join("data"), "run.yaml", &text);
    let before = files(&d.join("data"));
    let ex1 = d.join("ex1");
    let r = whet(
        d,
        &[
            "export",
            &arg(&d.join("data/run.yaml")),
            "--out",
            &arg(&ex1),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(before, files(&d.join("data")), "the inputs changed");
    let mut folders: Vec<String> = std::fs::read_dir(ex1.join("train"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    assert_eq!(
        folders,
        [
            "%2Ehidden",
            "1",
            "a%25b",
            "new%0Aline",
            "x%255Cy",
            "x%5Cy",
            "ü"
        ],
        "one folder per class, none merged"
    );
    let classes_of = |manifest: &Path| {
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
        m["data"]["images"]["classes"].clone()
    };
    let mut expected: Vec<&str> = sources.iter().map(|s| s.1).collect();
    expected.sort();
    assert_eq!(
        classes_of(&ex1.join("manifest.json")),
        serde_json::json!(expected)
    );
    // Load the export as input: the same class names, and the same folders again.
    write(&ex1, "run.yaml", text.replace("path: imgs", "path: train"));
    let ex2 = d.join("ex2");
    let r = whet(
        d,
        &["export", &arg(&ex1.join("run.yaml")), "--out", &arg(&ex2)],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        classes_of(&ex2.join("manifest.json")),
        serde_json::json!(expected)
    );
    let mut again: Vec<String> = std::fs::read_dir(ex2.join("train"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    again.sort();
    assert_eq!(again, folders);
}

/// Two folders that name one class (`%2Ea` is how `.a` is written) are refused, not merged.
#[test]
fn folders_naming_one_class_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    let run = image_case(d);
    for c in [".a", "%2Ea"] {
        let dir = d.join("data/imgs").join(c);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("0.png"), png(8, 8, 1)).unwrap();
    }
    let r = refused(
        d,
        &args(&["run", &arg(&run), "--out", &arg(&d.join("out"))]),
        &["both name the class `.a`", "%2Ea"],
    );
    assert!(r.is_ok(), "{r:?}");
}
