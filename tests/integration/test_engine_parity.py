"""Parity: the Pulumi program asks Docker for the containers the Docker engine created.

The shared dev environment was stood up by the Docker engine; ``docker inspect`` of its
containers is compared with the inputs the Pulumi component declares (under Pulumi's
mocks) for the same plan: command, env, mounts, tmpfs, ports, labels (spec hash included),
user, healthcheck, hardening, limits, network and aliases. The PIDs limit is no container
input on the Pulumi side (``engines.pulumi.pids`` sets it). ``test_pulumi_up.py`` compares
the containers the real Pulumi engine made with the Docker engine's.
"""

from __future__ import annotations

import dataclasses

import pulumi_mocks as mocks  # tests/pulumi_mocks.py

from secure_kafka.build.planner import build_plan
from secure_kafka.engines.pulumi.component import (
    SecureKafkaCluster,
    SecureKafkaClusterArgs,
)

CONTAINER = "docker:index/container:Container"


def pulumi_views(plan, env) -> dict[str, dict]:
    def body():
        cluster = SecureKafkaCluster(f"sk-{env.env}", SecureKafkaClusterArgs(plan, env.settings, env.project.root))
        return cluster.verification

    # A preview: nothing is written, the running environment is not touched.
    monitor, _ = mocks.run(body, stack=env.env, config={}, preview=True)
    return {r.inputs["name"]: mocks.docker_view_of_inputs(r.inputs) for r in monitor.of_type(CONTAINER)}


def docker_views(docker_client, plan) -> dict[str, dict]:
    api = docker_client.api
    image_info = api.inspect_image(plan.containers[0].image)
    return {spec.name: mocks.docker_view_of_inspect(api.inspect_container(spec.name), image_info) for spec in plan.containers}


def test_pulumi_inputs_match_the_running_containers(dev_env, docker_client, mode_image):
    plan = build_plan(dev_env.project.root, dev_env.settings, dev_env.secrets, mode_image, revocation=dev_env.certs.revocation_enabled())
    running = docker_views(docker_client, plan)
    declared = pulumi_views(plan, dev_env)
    assert sorted(declared) == sorted(running) == sorted(s.name for s in plan.containers)
    for name in running:
        assert declared[name] == running[name], name
    # Not a container input (Pulumi sets it with a resource of its own, engines.pulumi.pids): checked here.
    for spec in plan.containers:
        assert docker_client.api.inspect_container(spec.name)["HostConfig"]["PidsLimit"] == spec.pids_limit


def test_a_deliberate_change_breaks_parity(dev_env, docker_client, mode_image):
    plan = build_plan(dev_env.project.root, dev_env.settings, dev_env.secrets, mode_image, revocation=dev_env.certs.revocation_enabled())
    running = docker_views(docker_client, plan)
    broker = plan.containers[-1]
    changed = dataclasses.replace(plan, containers=plan.containers[:-1] + (
        dataclasses.replace(broker, security_opt=()),))
    declared = pulumi_views(changed, dev_env)
    assert declared[broker.name] != running[broker.name]
    assert declared[broker.name]["security_opt"] == [] != running[broker.name]["security_opt"]
