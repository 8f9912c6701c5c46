//! The deployment files in `deploy/` against the binary they deploy. No container engine runs
//! where these tests do, so each file is read as the engine would read it and compared with what
//! the workspace itself says: the settings loader (every `DOORSTEP__…` variable must name a real
//! key and parse), the ports those settings give, the roles the command line accepts, the health
//! service names, the package and binary in `Cargo.toml`. Then the real binary is started with
//! each replica's environment and command line (database and ports swapped for local ones) and
//! must answer gRPC health.

mod deploy;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use doorstep_server::settings::Role;
use doorstep_server::startup::LIVENESS_SERVICE;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use deploy::compose::{
    collector_configuration, compose, compose_variables, container_port, doorstep_services,
    interpolate, service_node,
};
use deploy::dockerfile::{Dockerfile, cargo_flag, server_package, version};
use deploy::kubernetes::{
    Pod, container_port_named, kubernetes_objects, labels, of_kind, pods, selects,
};
use deploy::{
    API_REPLICAS, SECRET_VARIABLES, assert_is_a_replica_on_postgres, assert_the_binary_accepts, at,
    get, host_and_port, load, port, port_of, read, sequence, strings, text, yaml,
};

#[test]
fn the_image_builds_the_real_binary_and_runs_it_as_a_user() {
    let dockerfile = Dockerfile::read();
    let (package, binaries) = server_package();
    let builder = dockerfile.stage("builder");

    // The dependency layer (cargo chef cook) and the final build build the same package and
    // binary, or the cached layer would not be the one the build needs.
    for (what, needle) in [
        ("cargo chef cook", "cargo chef cook"),
        ("cargo build", "cargo build"),
    ] {
        let command = builder
            .all("RUN")
            .find(|run| run.contains(needle))
            .unwrap_or_else(|| panic!("the builder stage runs {what}"));
        let words: Vec<&str> = command.split_whitespace().collect();
        assert_eq!(
            cargo_flag(&words, "--package", Some("-p")).as_deref(),
            Some(package.as_str()),
            "{what} builds the server's package"
        );
        let bin = cargo_flag(&words, "--bin", None).unwrap_or_else(|| panic!("{what} --bin"));
        assert!(
            binaries.contains(&bin),
            "{what} builds `{bin}`, not one of {binaries:?}"
        );
        assert!(
            words.contains(&"--release") && words.contains(&"--locked"),
            "{what}: {command}"
        );
    }

    // The binary the runtime copies is the one built, and it is the entry point.
    let runtime = dockerfile.runtime();
    let copied = runtime
        .all("COPY")
        .find(|copy| copy.contains("/target/release/"))
        .expect("the runtime stage copies the release binary");
    let words: Vec<&str> = copied.split_whitespace().collect();
    let [.., source, destination] = words.as_slice() else {
        panic!("COPY {copied}");
    };
    let built = source.rsplit('/').next().unwrap_or_default();
    assert!(binaries.iter().any(|bin| bin == built), "COPY {copied}");
    let entrypoint = Dockerfile::exec_form(
        runtime.last("ENTRYPOINT").expect("an ENTRYPOINT"),
        "ENTRYPOINT",
    );
    assert_eq!(entrypoint, vec![destination.to_string()]);
    let command = Dockerfile::exec_form(runtime.last("CMD").expect("a CMD"), "CMD");
    assert_the_binary_accepts(&command, "the image's CMD");

    // Not root, by number.
    assert_ne!(dockerfile.user(), 0, "the image runs as root");

    // The image's own environment names real settings, listens beyond loopback, and exposes the
    // ports those settings give.
    let settings = load(None, &dockerfile.environment(), "the Dockerfile's ENV");
    assert!(
        settings.server.host.is_unspecified()
            && settings.metrics.host.is_unspecified()
            && settings.console.host.is_unspecified()
    );
    assert_eq!(
        dockerfile.exposed_ports(),
        BTreeSet::from([
            settings.server.port,
            settings.metrics.port,
            settings.console.port
        ]),
        "EXPOSE lists the gRPC, metrics and console ports of the settings"
    );

    // The builder's Rust is at least the workspace's rust-version.
    let workspace: toml::Table = read("Cargo.toml").parse().expect("the workspace manifest");
    let minimum = workspace["workspace"]["package"]["rust-version"]
        .as_str()
        .expect("a workspace rust-version");
    let builder_image = &dockerfile.stage("chef").from;
    let tag = builder_image
        .strip_prefix("rust:")
        .unwrap_or_else(|| panic!("the builder is the official rust image, not {builder_image}"));
    let tag = tag.replace(
        "${RUST_VERSION}",
        dockerfile
            .global_arguments
            .get("RUST_VERSION")
            .map_or("", String::as_str),
    );
    let image_version = tag.split('-').next().unwrap_or_default();
    assert!(
        version(image_version) >= version(minimum),
        "the builder's Rust {image_version} is older than the workspace's rust-version {minimum}"
    );
    assert!(
        builder.from == "chef" && dockerfile.stage("planner").from == "chef",
        "every build stage starts from the toolchain stage"
    );
}

#[test]
fn compose_runs_two_api_replicas_and_a_notifier_on_real_settings() {
    let compose = compose();
    let services = doorstep_services(&compose);
    let replicas = |role: Role| -> i64 {
        services
            .iter()
            .filter(|service| service.role == role)
            .map(|service| service.replicas)
            .sum()
    };
    assert_eq!(replicas(Role::Api), API_REPLICAS, "API replicas");
    assert_eq!(replicas(Role::Notifier), 1, "notifier replicas");
    assert_eq!(
        replicas(Role::All),
        0,
        "a role=all replica would run a second notifier"
    );

    let postgres = at(&compose, "services.postgres");
    assert!(
        get(postgres, "healthcheck.test").is_some(),
        "PostgreSQL has a health check for the replicas to wait on"
    );
    for service in &services {
        let context = &service.name;
        assert_the_binary_accepts(&service.command, context);
        let settings = &service.settings;
        assert_is_a_replica_on_postgres(settings, context);
        assert_eq!(
            settings.auth.api_keys_file.parent(),
            Some(Path::new("data")),
            "{context}: the API key file is in the shared data volume"
        );
        assert!(
            !settings.auth.create_first_admin_key,
            "{context}: replicas starting together would each write a first admin key"
        );
        let condition = text(at(
            service_node(&compose, context),
            "depends_on.postgres.condition",
        ));
        assert_eq!(
            condition, "service_healthy",
            "{context} waits for PostgreSQL"
        );
        // The database is the postgres service's, with its password.
        let password = interpolate(
            &text(at(postgres, "environment.POSTGRES_PASSWORD")),
            &compose_variables(),
            "postgres",
        );
        let url = settings.database.url();
        assert!(
            url.starts_with(&format!("postgres://doorstep:{password}@postgres:5432/")),
            "{context}: {}",
            doorstep_server::settings::without_password(url)
        );
        for name in SECRET_VARIABLES {
            if let Some(raw) = get(
                service_node(&compose, context),
                &format!("environment.{name}"),
            ) {
                assert!(
                    text(raw).contains("${"),
                    "{context}: {name} comes from deploy/.env, not from compose.yaml"
                );
            }
        }
        // Compose's default stop timeout is 10 s; the server's own grace must fit inside it.
        let stop = get(service_node(&compose, context), "stop_grace_period")
            .map_or("10s".to_owned(), text);
        let stop_seconds: u64 = stop
            .strip_suffix('s')
            .and_then(|seconds| seconds.parse().ok())
            .unwrap_or_else(|| panic!("{context}: stop_grace_period {stop}: write it in seconds"));
        assert!(
            stop_seconds > settings.server.shutdown_grace_seconds,
            "{context}: stop_grace_period {stop_seconds}s must exceed server.shutdown_grace_seconds"
        );
        if let Some(ports) = get(service_node(&compose, context), "ports") {
            // gRPC, and the console where this service serves it.
            let mut published = vec![settings.server.port];
            if settings.console.enabled && settings.server.role.serves_api() {
                published.push(settings.console.port);
            }
            for mapping in strings(ports) {
                assert!(
                    published.contains(&container_port(&mapping)),
                    "{context}: {mapping} publishes none of {published:?}"
                );
            }
        }
        // The OTLP endpoint is a collector service whose configuration receives OTLP there.
        let endpoint = service
            .environment
            .get("OTEL_EXPORTER_OTLP_ENDPOINT")
            .unwrap_or_else(|| panic!("{context} exports OTLP"));
        let (host, port) = host_and_port(endpoint);
        let collector = service_node(&compose, &host);
        let configuration = collector_configuration(collector, &host);
        assert_eq!(
            host_and_port(&text(at(
                &configuration,
                "receivers.otlp.protocols.grpc.endpoint"
            )))
            .1,
            port,
            "{context}: OTEL_EXPORTER_OTLP_ENDPOINT {endpoint} is not where {host} receives OTLP"
        );
    }
    // One database and one master key for every replica.
    let shared = |name: &str| -> BTreeSet<&String> {
        services
            .iter()
            .filter_map(|service| service.environment.get(name))
            .collect()
    };
    assert_eq!(shared("DOORSTEP__DATABASE__URL").len(), 1);
    assert_eq!(shared("DOORSTEP__PRIVACY__MASTER_KEY").len(), 1);
}

#[test]
fn the_collector_sends_traces_to_jaeger_and_scrapes_every_replica() {
    let compose = compose();
    let configuration =
        collector_configuration(service_node(&compose, "otel-collector"), "otel-collector");
    let pipelines = at(&configuration, "service.pipelines");
    let exporters = strings(at(pipelines, "traces.exporters"));
    assert!(strings(at(pipelines, "traces.receivers")).contains(&"otlp".to_owned()));
    let jaeger_exporter = exporters
        .iter()
        .find(|exporter| exporter.starts_with("otlp"))
        .expect("traces are exported over OTLP");
    let (host, port) = host_and_port(&text(at(
        at(&configuration, "exporters")
            .as_mapping_get(jaeger_exporter)
            .expect("the exporter is configured"),
        "endpoint",
    )));
    let jaeger = service_node(&compose, &host);
    assert!(text(at(jaeger, "image")).starts_with("jaegertracing/all-in-one"));
    assert_eq!(
        port, 4317,
        "Jaeger all-in-one receives OTLP over gRPC on 4317"
    );

    // The scrape reaches every Doorstep service on its metrics port.
    let services = doorstep_services(&compose);
    let scrape = &sequence(at(
        &configuration,
        "receivers.prometheus.config.scrape_configs",
    ))[0];
    let discovery = &sequence(at(scrape, "dns_sd_configs"))[0];
    let names: BTreeSet<String> = strings(at(discovery, "names")).into_iter().collect();
    let doorstep: BTreeSet<String> = services
        .iter()
        .map(|service| service.name.clone())
        .collect();
    assert_eq!(
        names, doorstep,
        "the collector scrapes every Doorstep service"
    );
    for service in &services {
        assert_eq!(
            port_of(discovery),
            service.settings.metrics.port,
            "{}",
            service.name
        );
    }
    assert_eq!(text(at(scrape, "metrics_path")), "/metrics");
    assert!(strings(at(pipelines, "metrics.receivers")).contains(&"prometheus".to_owned()));
}

#[test]
fn kubernetes_runs_two_api_replicas_and_a_notifier_on_real_settings() {
    let objects = kubernetes_objects();
    let pods = pods(&objects);
    let image_user = Dockerfile::read().user();
    let replicas = |role: Role| -> i64 {
        pods.iter()
            .filter(|pod| pod.role == role)
            .map(|pod| {
                at(pod.deployment, "spec.replicas")
                    .as_integer()
                    .expect("spec.replicas")
            })
            .sum()
    };
    assert_eq!(replicas(Role::Api), API_REPLICAS, "API replicas");
    assert_eq!(replicas(Role::Notifier), 1, "notifier replicas");
    assert_eq!(
        replicas(Role::All),
        0,
        "a role=all pod would run a second notifier"
    );

    for pod in &pods {
        let context = &pod.name;
        let settings = &pod.settings;
        let spec = at(pod.deployment, "spec.template.spec");
        assert_the_binary_accepts(&pod.arguments, context);
        assert_is_a_replica_on_postgres(settings, context);
        assert!(settings.metrics.enabled, "{context}: metrics");

        // Ports: the container's, the probes' and the scrape annotation's are the settings'.
        assert_eq!(
            container_port_named(pod.container, "grpc"),
            settings.server.port,
            "{context}"
        );
        assert_eq!(
            container_port_named(pod.container, "metrics"),
            settings.metrics.port,
            "{context}"
        );
        let annotations = labels(at(pod.deployment, "spec.template.metadata.annotations"));
        assert_eq!(
            annotations.get("prometheus.io/port"),
            Some(&settings.metrics.port.to_string()),
            "{context}: scrape annotation"
        );

        // Probes: readiness is the overall status (the empty service name), liveness and start-up
        // the liveness service, all on the gRPC port.
        let readiness = at(pod.container, "readinessProbe.grpc");
        assert_eq!(
            port(at(readiness, "port")),
            settings.server.port,
            "{context}: readiness"
        );
        assert_eq!(
            get(readiness, "service").map(text).unwrap_or_default(),
            "",
            "{context}: readiness asks for the overall status"
        );
        for probe in ["livenessProbe", "startupProbe"] {
            let probe_grpc = at(pod.container, &format!("{probe}.grpc"));
            assert_eq!(
                port(at(probe_grpc, "port")),
                settings.server.port,
                "{context}: {probe}"
            );
            assert_eq!(
                text(at(probe_grpc, "service")),
                LIVENESS_SERVICE,
                "{context}: {probe} asks for the liveness service"
            );
        }
        let termination = at(spec, "terminationGracePeriodSeconds")
            .as_integer()
            .expect("terminationGracePeriodSeconds");
        assert!(
            u64::try_from(termination)
                .is_ok_and(|seconds| seconds > settings.server.shutdown_grace_seconds),
            "{context}: terminationGracePeriodSeconds {termination} must exceed \
             server.shutdown_grace_seconds {}",
            settings.server.shutdown_grace_seconds
        );

        // Not root (the image's user), nothing writable but the data directory.
        assert_eq!(
            at(spec, "securityContext.runAsNonRoot").as_bool(),
            Some(true)
        );
        assert_eq!(
            at(spec, "securityContext.runAsUser").as_integer(),
            Some(i64::from(image_user)),
            "{context}: the image's user"
        );
        let security = at(pod.container, "securityContext");
        assert_eq!(at(security, "readOnlyRootFilesystem").as_bool(), Some(true));
        assert_eq!(
            at(security, "allowPrivilegeEscalation").as_bool(),
            Some(false)
        );
        assert_eq!(
            strings(at(security, "capabilities.drop")),
            vec!["ALL".to_owned()]
        );
        assert!(
            !settings.auth.create_first_admin_key,
            "{context}: with a read-only root file system the server cannot write a first admin key"
        );
        let workdir = Dockerfile::read()
            .runtime()
            .last("WORKDIR")
            .expect("a WORKDIR")
            .to_owned();
        let data = Path::new(&workdir).join("data");
        assert!(
            sequence(at(pod.container, "volumeMounts"))
                .iter()
                .any(|mount| Path::new(&text(at(mount, "mountPath"))) == data),
            "{context}: the data directory {} is a writable volume",
            data.display()
        );

        // The OTLP endpoint is where the shipped collector configuration receives OTLP.
        let endpoint = pod
            .environment
            .get("OTEL_EXPORTER_OTLP_ENDPOINT")
            .unwrap_or_else(|| panic!("{context} exports OTLP"));
        let collector = yaml("deploy/otel-collector.yaml");
        assert_eq!(
            host_and_port(endpoint).1,
            host_and_port(&text(at(
                &collector,
                "receivers.otlp.protocols.grpc.endpoint"
            )))
            .1,
            "{context}: {endpoint}"
        );
    }

    // The ConfigMap alone holds no secret.
    for pod in &pods {
        let alone = load(
            Some(&pod.config_path),
            &BTreeMap::new(),
            "the ConfigMap alone",
        );
        assert!(alone.auth.jwt_hs256_secret.is_none() && alone.privacy.master_key.is_none());
        assert!(
            !alone.database.is_postgres(),
            "the database URL (and password) is in the Secret"
        );
    }

    // The Service reaches the API pods (and only them) on the settings' ports.
    let api = pods
        .iter()
        .find(|pod| pod.role == Role::Api)
        .expect("an API deployment");
    let notifier = pods
        .iter()
        .find(|pod| pod.role == Role::Notifier)
        .expect("a notifier");
    let pod_labels = |pod: &Pod<'_>| labels(at(pod.deployment, "spec.template.metadata.labels"));
    let services = of_kind(&objects, "Service");
    assert_eq!(services.len(), 1, "one Service");
    let service = services[0];
    let selector = labels(at(service, "spec.selector"));
    assert!(selects(&selector, &pod_labels(api)) && !selects(&selector, &pod_labels(notifier)));
    for (name, expected) in [
        ("grpc", api.settings.server.port),
        ("metrics", api.settings.metrics.port),
    ] {
        let service_port = sequence(at(service, "spec.ports"))
            .iter()
            .find(|port| text(at(port, "name")) == name)
            .unwrap_or_else(|| panic!("the Service has a port named {name}"));
        let target = at(service_port, "targetPort");
        let target = match target.as_str() {
            Some(named) => container_port_named(api.container, named),
            None => port(target),
        };
        assert_eq!(target, expected, "the Service's {name} port");
        if name == "grpc" {
            assert_eq!(text(at(service_port, "appProtocol")), "grpc");
        }
    }

    // The disruption budget covers the API pods and lets one of them go.
    let budgets = of_kind(&objects, "PodDisruptionBudget");
    assert_eq!(budgets.len(), 1);
    let selector = labels(at(budgets[0], "spec.selector.matchLabels"));
    assert!(selects(&selector, &pod_labels(api)) && !selects(&selector, &pod_labels(notifier)));
    let minimum = at(budgets[0], "spec.minAvailable")
        .as_integer()
        .expect("minAvailable");
    assert!(
        (1..API_REPLICAS).contains(&minimum),
        "minAvailable {minimum}"
    );
    let deployment_selector = labels(at(api.deployment, "spec.selector.matchLabels"));
    assert!(selects(&deployment_selector, &pod_labels(api)));
}

/// Starts the built binary with `environment` and `arguments` as a replica would run, but on a
/// fresh SQLite file, on loopback and free ports, without OTLP export, in a temporary working
/// directory; it must answer gRPC health for readiness and liveness, then stop cleanly.
async fn assert_starts_and_answers_health(
    mut environment: BTreeMap<String, String>,
    arguments: &[String],
    context: &str,
) {
    let directory = tempfile::tempdir().expect("a temporary directory");
    environment.insert(
        "DOORSTEP__DATABASE__URL".to_owned(),
        format!(
            "sqlite://{}",
            directory.path().join("data/doorstep.db").display()
        ),
    );
    for (name, value) in [
        ("DOORSTEP__SERVER__HOST", "127.0.0.1"),
        ("DOORSTEP__SERVER__PORT", "0"),
        ("DOORSTEP__METRICS__HOST", "127.0.0.1"),
        ("DOORSTEP__METRICS__PORT", "0"),
        ("DOORSTEP__CONSOLE__HOST", "127.0.0.1"),
        ("DOORSTEP__CONSOLE__PORT", "0"),
    ] {
        environment.insert(name.to_owned(), value.to_owned());
    }
    environment.retain(|name, _| !name.starts_with("OTEL_"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_doorstep"));
    command
        .args(arguments)
        .current_dir(directory.path())
        .env_clear()
        .envs(
            std::env::vars()
                .filter(|(name, _)| !(name.starts_with("DOORSTEP") || name.starts_with("OTEL_"))),
        )
        .envs(&environment)
        .env("RUST_LOG", "info");
    let mut running = support::spawn(command);
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", running.port))
            .expect("a valid endpoint")
            .connect()
            .await
            .unwrap_or_else(|error| panic!("{context}: no connection: {error}"));
    let mut health = HealthClient::new(channel);
    for service in ["", LIVENESS_SERVICE] {
        let status = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .unwrap_or_else(|status| {
                panic!(
                    "{context}: health `{service}`: {status}\n{}",
                    running.stderr_tail()
                )
            })
            .into_inner()
            .status;
        assert_eq!(
            status,
            ServingStatus::Serving as i32,
            "{context}: health `{service}`"
        );
    }
    let exit = running.stop_gracefully().await;
    assert!(
        exit.success(),
        "{context}: {exit:?}\n{}",
        running.stderr_tail()
    );
}

#[tokio::test]
async fn the_binary_serves_health_with_each_compose_replicas_settings() {
    for service in doorstep_services(&compose()) {
        assert_starts_and_answers_health(service.environment, &service.command, &service.name)
            .await;
    }
}

#[tokio::test]
async fn the_binary_serves_health_with_each_kubernetes_pods_settings() {
    let objects = kubernetes_objects();
    for pod in pods(&objects) {
        let mut environment = pod.environment.clone();
        // The ConfigMap's file, where this machine has it.
        environment.insert(
            "DOORSTEP_CONFIG".to_owned(),
            pod.config_path.display().to_string(),
        );
        assert_starts_and_answers_health(environment, &pod.arguments, &pod.name).await;
    }
}

/// The systemd unit keeps whatever the service creates to the service's user: residents' keys,
/// the master key and the database are never readable by group or others.
#[test]
fn the_systemd_unit_creates_files_for_its_user_alone() {
    let unit = read("deploy/doorstep.service");
    let service: Vec<&str> = unit
        .lines()
        .map(str::trim)
        .skip_while(|line| *line != "[Service]")
        .skip(1)
        .take_while(|line| !line.starts_with('['))
        .collect();
    assert!(
        service.contains(&"UMask=0077"),
        "the [Service] section sets UMask=0077: {service:?}"
    );
}
