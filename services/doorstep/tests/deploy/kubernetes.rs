//! `deploy/kubernetes/`: the objects the kustomization applies and the pods they run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use base64::Engine;
use doorstep_server::Settings;
use doorstep_server::settings::{Role, TEST_JWT_SECRET};
use saphyr::YamlOwned;

use super::dockerfile::Dockerfile;
use super::{
    SECRET_VARIABLES, at, get, load, port, repository, role, sequence, strings, text, yaml,
    yaml_documents,
};

pub const KUBERNETES: &str = "deploy/kubernetes";

/// Every document the kustomization applies, by kind.
pub fn kubernetes_objects() -> Vec<YamlOwned> {
    let kustomization = yaml(&format!("{KUBERNETES}/kustomization.yaml"));
    let listed: BTreeSet<String> = strings(at(&kustomization, "resources"))
        .into_iter()
        .collect();
    let present: BTreeSet<String> = std::fs::read_dir(repository().join(KUBERNETES))
        .expect("deploy/kubernetes")
        .map(|entry| {
            entry
                .expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".yaml"))
        .filter(|name| name != "kustomization.yaml" && !name.contains(".example."))
        .collect();
    assert_eq!(
        listed, present,
        "kustomization.yaml lists every manifest (examples excepted)"
    );
    listed
        .iter()
        .flat_map(|file| yaml_documents(&format!("{KUBERNETES}/{file}")))
        .collect()
}

pub fn of_kind<'a>(objects: &'a [YamlOwned], kind: &str) -> Vec<&'a YamlOwned> {
    objects
        .iter()
        .filter(|object| text(at(object, "kind")) == kind)
        .collect()
}

pub fn labels(node: &YamlOwned) -> BTreeMap<String, String> {
    node.as_mapping()
        .unwrap_or_else(|| panic!("labels: {node:?}"))
        .iter()
        .map(|(key, value)| (text(key), text(value)))
        .collect()
}

pub fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector
        .iter()
        .all(|(key, value)| labels.get(key) == Some(value))
}

/// The example Secret's keys, each with a stand-in value fit for a test.
pub fn secret_stand_ins() -> BTreeMap<(String, String), String> {
    let secret = yaml(&format!("{KUBERNETES}/secret.example.yaml"));
    let name = text(at(&secret, "metadata.name"));
    at(&secret, "stringData")
        .as_mapping()
        .expect("stringData")
        .keys()
        .map(|key| {
            let key = text(key);
            let stand_in = match key.as_str() {
                "database-url" => "postgres://doorstep:test@postgres:5432/doorstep".to_owned(),
                "master-key" => base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
                "jwt-hs256-secret" => TEST_JWT_SECRET.to_owned(),
                other => panic!("teach this test a stand-in value for the secret key {other}"),
            };
            ((name.clone(), key), stand_in)
        })
        .collect()
}

pub struct Pod<'a> {
    pub deployment: &'a YamlOwned,
    pub container: &'a YamlOwned,
    pub name: String,
    pub arguments: Vec<String>,
    pub environment: BTreeMap<String, String>,
    /// The ConfigMap's settings file, written where the test can read it, at `config_path`.
    pub _config_directory: tempfile::TempDir,
    pub config_path: PathBuf,
    pub settings: Settings,
    pub role: Role,
}

/// Each Deployment's container with the settings it would load: the ConfigMap's file where
/// `DOORSTEP_CONFIG` says it is mounted, then its environment (Secret references replaced by
/// stand-ins), then the image's environment beneath both.
pub fn pods(objects: &[YamlOwned]) -> Vec<Pod<'_>> {
    let stand_ins = secret_stand_ins();
    let image_environment = Dockerfile::read().environment();
    of_kind(objects, "Deployment")
        .into_iter()
        .map(|deployment| {
            let name = text(at(deployment, "metadata.name"));
            let spec = at(deployment, "spec.template.spec");
            let containers = sequence(at(spec, "containers"));
            assert_eq!(containers.len(), 1, "{name}: one container");
            let container = &containers[0];
            let mut environment = image_environment.clone();
            for variable in sequence(at(container, "env")) {
                let variable_name = text(at(variable, "name"));
                let value = match (get(variable, "value"), get(variable, "valueFrom")) {
                    (Some(value), None) => {
                        assert!(
                            !SECRET_VARIABLES.contains(&variable_name.as_str()),
                            "{name}: {variable_name} must come from a Secret"
                        );
                        text(value)
                    }
                    (None, Some(from)) => match get(from, "secretKeyRef") {
                        Some(reference) => {
                            let key = (text(at(reference, "name")), text(at(reference, "key")));
                            stand_ins.get(&key).cloned().unwrap_or_else(|| {
                                panic!("{name}: {variable_name} refers to {key:?}, which secret.example.yaml lacks")
                            })
                        }
                        None => {
                            assert!(
                                !SECRET_VARIABLES.contains(&variable_name.as_str()),
                                "{name}: {variable_name} must come from a Secret"
                            );
                            "from-the-downward-api".to_owned()
                        }
                    },
                    _ => panic!("{name}: {variable_name} needs a value or valueFrom"),
                };
                environment.insert(variable_name, value);
            }
            // DOORSTEP_CONFIG names the mounted ConfigMap file; write its contents out.
            let config_in_pod = environment
                .get("DOORSTEP_CONFIG")
                .unwrap_or_else(|| panic!("{name} sets DOORSTEP_CONFIG"))
                .clone();
            let contents = mounted_config_file(objects, spec, container, &config_in_pod, &name);
            let config_directory = tempfile::tempdir().expect("a temporary directory");
            let config_path = config_directory.path().join(
                Path::new(&config_in_pod)
                    .file_name()
                    .expect("DOORSTEP_CONFIG names a file"),
            );
            std::fs::write(&config_path, contents).expect("the settings file is written");
            let settings = load(Some(&config_path), &environment, &name);
            let arguments = get(container, "command")
                .map(strings)
                .into_iter()
                .flatten()
                .chain(get(container, "args").map(strings).into_iter().flatten())
                .collect::<Vec<_>>();
            let role = role(&arguments, &settings, &name);
            Pod {
                deployment,
                container,
                name,
                arguments,
                environment,
                _config_directory: config_directory,
                config_path,
                settings,
                role,
            }
        })
        .collect()
}

/// The contents of the ConfigMap key mounted at `path` in the container.
pub fn mounted_config_file(
    objects: &[YamlOwned],
    spec: &YamlOwned,
    container: &YamlOwned,
    path: &str,
    context: &str,
) -> String {
    let mount = sequence(at(container, "volumeMounts"))
        .iter()
        .find(|mount| {
            let mount_path = text(at(mount, "mountPath"));
            match get(mount, "subPath") {
                Some(_) => mount_path == path,
                None => Path::new(path).parent() == Some(Path::new(&mount_path)),
            }
        })
        .unwrap_or_else(|| panic!("{context}: nothing is mounted at {path}"));
    let volume_name = text(at(mount, "name"));
    let key = get(mount, "subPath").map_or_else(
        || {
            Path::new(path)
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default()
        },
        text,
    );
    let volume = sequence(at(spec, "volumes"))
        .iter()
        .find(|volume| text(at(volume, "name")) == volume_name)
        .unwrap_or_else(|| panic!("{context}: no volume {volume_name}"));
    let config_map_name = text(at(volume, "configMap.name"));
    let config_map = of_kind(objects, "ConfigMap")
        .into_iter()
        .find(|config_map| text(at(config_map, "metadata.name")) == config_map_name)
        .unwrap_or_else(|| panic!("{context}: no ConfigMap {config_map_name}"));
    at(config_map, "data")
        .as_mapping_get(&key)
        .map(text)
        .unwrap_or_else(|| panic!("{context}: ConfigMap {config_map_name} has no key {key}"))
}

pub fn container_port_named(container: &YamlOwned, name: &str) -> u16 {
    sequence(at(container, "ports"))
        .iter()
        .find(|port| get(port, "name").map(text).as_deref() == Some(name))
        .map(port_of_container)
        .unwrap_or_else(|| panic!("no container port named {name}"))
}

pub fn port_of_container(port: &YamlOwned) -> u16 {
    self::port(at(port, "containerPort"))
}
