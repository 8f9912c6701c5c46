//! `deploy/Dockerfile`: stages and instructions.

use std::collections::{BTreeMap, BTreeSet};

use super::read;

/// One instruction, continuation lines joined.
pub struct Instruction {
    pub keyword: String,
    pub arguments: String,
}

pub struct Stage {
    pub from: String,
    pub name: Option<String>,
    pub instructions: Vec<Instruction>,
}

impl Stage {
    pub fn all(&self, keyword: &str) -> impl Iterator<Item = &str> {
        self.instructions
            .iter()
            .filter(move |instruction| instruction.keyword == keyword)
            .map(|instruction| instruction.arguments.as_str())
    }

    pub fn last(&self, keyword: &str) -> Option<&str> {
        self.all(keyword).last()
    }

    /// `ENV A=1 B=2` (the only form this Dockerfile uses).
    pub fn environment(&self) -> BTreeMap<String, String> {
        self.all("ENV")
            .flat_map(str::split_whitespace)
            .map(|pair| {
                let (name, value) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("ENV {pair}: write ENV NAME=value"));
                (name.to_owned(), value.trim_matches('"').to_owned())
            })
            .collect()
    }
}

pub struct Dockerfile {
    /// `ARG` lines before the first `FROM`, with their defaults.
    pub global_arguments: BTreeMap<String, String>,
    pub stages: Vec<Stage>,
}

impl Dockerfile {
    pub fn read() -> Self {
        let source = read("deploy/Dockerfile");
        let mut lines = Vec::new();
        let mut pending = String::new();
        for line in source.lines() {
            let line = line.trim();
            if pending.is_empty() && (line.starts_with('#') || line.is_empty()) {
                continue;
            }
            match line.strip_suffix('\\') {
                Some(start) => {
                    pending.push_str(start);
                    pending.push(' ');
                }
                None => {
                    pending.push_str(line);
                    lines.push(std::mem::take(&mut pending));
                }
            }
        }
        let mut dockerfile = Dockerfile {
            global_arguments: BTreeMap::new(),
            stages: Vec::new(),
        };
        for line in lines {
            let (keyword, arguments) = line.split_once(' ').unwrap_or((&line, ""));
            let keyword = keyword.to_ascii_uppercase();
            let arguments = arguments.trim().to_owned();
            if keyword == "FROM" {
                let words: Vec<&str> = arguments.split_whitespace().collect();
                let name = match words.as_slice() {
                    [_, alias, name] if alias.eq_ignore_ascii_case("as") => Some(name.to_string()),
                    _ => None,
                };
                dockerfile.stages.push(Stage {
                    from: words[0].to_owned(),
                    name,
                    instructions: Vec::new(),
                });
                continue;
            }
            match dockerfile.stages.last_mut() {
                Some(stage) => stage.instructions.push(Instruction { keyword, arguments }),
                None if keyword == "ARG" => {
                    let (name, default) = arguments
                        .split_once('=')
                        .unwrap_or_else(|| panic!("ARG {arguments} before FROM needs a default"));
                    dockerfile
                        .global_arguments
                        .insert(name.to_owned(), default.to_owned());
                }
                None => panic!("{keyword} before the first FROM"),
            }
        }
        dockerfile
    }

    pub fn runtime(&self) -> &Stage {
        self.stages.last().expect("the Dockerfile has a stage")
    }

    pub fn stage(&self, name: &str) -> &Stage {
        self.stages
            .iter()
            .find(|stage| stage.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no stage named {name}"))
    }

    /// The image's environment, for the settings the image itself gives every container.
    pub fn environment(&self) -> BTreeMap<String, String> {
        self.runtime().environment()
    }

    /// The numeric user the runtime stage runs as.
    pub fn user(&self) -> u32 {
        let user = self
            .runtime()
            .last("USER")
            .expect("the runtime stage sets USER");
        let uid = user.split(':').next().unwrap_or(user);
        uid.parse().unwrap_or_else(|_| {
            panic!("USER {user}: use a numeric uid, which runAsNonRoot can check")
        })
    }

    pub fn exposed_ports(&self) -> BTreeSet<u16> {
        self.runtime()
            .all("EXPOSE")
            .flat_map(str::split_whitespace)
            .map(|port| {
                port.trim_end_matches("/tcp")
                    .parse()
                    .unwrap_or_else(|error| panic!("EXPOSE {port}: {error}"))
            })
            .collect()
    }

    pub fn exec_form(arguments: &str, keyword: &str) -> Vec<String> {
        serde_json::from_str(arguments)
            .unwrap_or_else(|error| panic!("{keyword} {arguments}: use the JSON form: {error}"))
    }
}

/// `[package] name` and the `[[bin]]` names of services/doorstep/Cargo.toml.
pub fn server_package() -> (String, Vec<String>) {
    let manifest: toml::Table = read("services/doorstep/Cargo.toml")
        .parse()
        .unwrap_or_else(|error| panic!("services/doorstep/Cargo.toml: {error}"));
    let package = manifest["package"]["name"]
        .as_str()
        .expect("a package name")
        .to_owned();
    let binaries = manifest["bin"]
        .as_array()
        .expect("[[bin]] entries")
        .iter()
        .map(|bin| bin["name"].as_str().expect("a bin name").to_owned())
        .collect();
    (package, binaries)
}

pub fn version(text: &str) -> Vec<u32> {
    text.split('.')
        .map(|part| {
            part.parse()
                .unwrap_or_else(|error| panic!("version {text}: {error}"))
        })
        .collect()
}

/// `--package NAME` / `-p NAME` and `--bin NAME` of a cargo command line.
pub fn cargo_flag(words: &[&str], long: &str, short: Option<&str>) -> Option<String> {
    words
        .windows(2)
        .find_map(|pair| (pair[0] == long || Some(pair[0]) == short).then(|| pair[1].to_owned()))
}
