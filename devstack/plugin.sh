#!/bin/bash
#
# Copyright 2026 The loki-nova developers
#
# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

# DevStack plugin of loki-nova, enabled in local.conf with
#
#     enable_plugin loki-nova <url of this repository> [branch]
#
# DevStack sources this file, after devstack/settings, with the phase as
# arguments ("stack install", "stack post-config", "stack extra",
# "unstack", "clean").  By phase:
#
# stack install      installs loki-nova into DevStack's Python on every
#                    node: nova-compute needs the driver, nova-api the
#                    loki: extra spec validators.
# stack post-config  on nodes with n-cpu: compute_driver = loki.LokiDriver
#                    (and [loki] node_tiers) in $NOVA_CPU_CONF; with the
#                    loki-memtier service, the agent's $LOKI_MEMTIER_CONF,
#                    on the message bus nova-compute uses.  local.conf's
#                    [[post-config|...]] sections are merged after this,
#                    so they can override any of it.
# stack extra        on nodes with n-cpu and loki-memtier: starts the agent
#                    (as root: it moves other processes' pages); on the
#                    node with n-api: creates the example flavors.
# unstack            stops the agent.
# clean              removes the agent's configuration and runtime state.
#                    DevStack's clean.sh removes /etc/nova and the
#                    databases (with the flavors) itself.

_LOKI_XTRACE=$(set +o | grep xtrace)
set -o xtrace

# The phases' functions
# ---------------------

# install_loki_nova - install the checkout in development mode
function install_loki_nova {
    setup_develop "$LOKI_NOVA_DIR"
}

# configure_loki_nova_compute - make nova-compute load LokiDriver
function configure_loki_nova_compute {
    if [[ -z "${NOVA_CPU_CONF:-}" ]]; then
        die $LINENO "NOVA_CPU_CONF is not set; is nova enabled?"
    fi
    iniset "$NOVA_CPU_CONF" DEFAULT compute_driver loki.LokiDriver
    if [[ -n "$LOKI_NODE_TIERS" ]]; then
        iniset "$NOVA_CPU_CONF" loki node_tiers "$LOKI_NODE_TIERS"
    fi
}

# _loki_nova_cpu_option SECTION OPTION - the option's value in
# $NOVA_CPU_CONF, empty when it or the file is missing
function _loki_nova_cpu_option {
    if [[ -f "$NOVA_CPU_CONF" ]]; then
        iniget "$NOVA_CPU_CONF" "$1" "$2"
    fi
}

# configure_loki_memtier - write the agent's configuration file
function configure_loki_memtier {
    local conf_dir transport_url host
    conf_dir=$(dirname "$LOKI_MEMTIER_CONF")
    sudo install -d -o "$STACK_USER" -m 0755 "$conf_dir"
    # A fresh file each stack, readable by its owner only: it holds the
    # broker's password.  The agent runs as root.
    rm -f "$LOKI_MEMTIER_CONF"
    (umask 077 && : >"$LOKI_MEMTIER_CONF")

    # The agent must be on nova-compute's bus, which DevStack may have put
    # on a cell's virtual host: take nova-compute's own transport_url, or
    # DevStack's default one when nova-cpu.conf has none yet.
    transport_url=$(_loki_nova_cpu_option DEFAULT transport_url)
    if [[ -n "$transport_url" ]]; then
        iniset "$LOKI_MEMTIER_CONF" DEFAULT transport_url "$transport_url"
    else
        iniset_rpc_backend loki-nova "$LOKI_MEMTIER_CONF" DEFAULT
    fi
    if [[ -n "${ENABLE_DEBUG_LOG_LEVEL:-}" ]]; then
        iniset "$LOKI_MEMTIER_CONF" DEFAULT debug "$ENABLE_DEBUG_LOG_LEVEL"
    fi
    iniset "$LOKI_MEMTIER_CONF" oslo_messaging_notifications driver \
        messagingv2

    # LokiDriver calls the agent by nova-compute's [DEFAULT] host.
    host=$LOKI_MEMTIER_HOST
    if [[ -z "$host" ]]; then
        host=$(_loki_nova_cpu_option DEFAULT host)
    fi
    if [[ -z "$host" ]]; then
        host=$(hostname)
    fi
    iniset "$LOKI_MEMTIER_CONF" memtier host "$host"
    iniset "$LOKI_MEMTIER_CONF" memtier state_dir "$LOKI_MEMTIER_STATE_DIR"
    iniset "$LOKI_MEMTIER_CONF" memtier registration_dir \
        "$LOKI_MEMTIER_STATE_DIR/guests"
    if [[ -n "$LOKI_NODE_TIERS" ]]; then
        iniset "$LOKI_MEMTIER_CONF" memtier node_tiers "$LOKI_NODE_TIERS"
    fi
}

# start_loki_memtier - run the agent as DevStack service loki-memtier
function start_loki_memtier {
    run_process loki-memtier \
        "$LOKI_BIN_DIR/loki-memtier-agent --config-file $LOKI_MEMTIER_CONF" \
        root root
}

# stop_loki_memtier - stop the agent
function stop_loki_memtier {
    stop_process loki-memtier
}

# _loki_openstack ARGS... - the openstack client as DevStack's admin
function _loki_openstack {
    openstack --os-cloud "$LOKI_OS_CLOUD" "$@"
}

# create_loki_flavor NAME RAM_MB ARGS... - create flavor NAME (unless it
# exists with that RAM) and give it the properties that
# "loki-memtier flavor-properties --memory-mb RAM_MB ARGS..." prints
function create_loki_flavor {
    local name=$1 ram=$2
    shift 2
    local printed line existing
    local -a words props=()

    printed=$("$LOKI_BIN_DIR/loki-memtier" flavor-properties \
        --memory-mb "$ram" --flavor "$name" "$@") \
        || die $LINENO "loki-memtier flavor-properties failed for $name"
    # It prints one command: "openstack flavor set NAME \", then one
    # "--property KEY=VALUE \" line per property.  Keys and values are
    # plain words; anything else is refused rather than guessed at.
    while IFS= read -r line; do
        read -r -a words <<<"$line"
        if [[ "${words[*]:0:3}" == "openstack flavor set" ]]; then
            continue
        fi
        if [[ "${words[0]:-}" != "--property" ]] \
            || [[ ! "${words[1]:-}" =~ ^[A-Za-z0-9_:]+=[A-Za-z0-9_.-]+$ ]]
        then
            die $LINENO "unexpected line from loki-memtier: $line"
        fi
        props+=(--property "${words[1]}")
    done <<<"$printed"
    if [[ ${#props[@]} -eq 0 ]]; then
        die $LINENO "loki-memtier printed no property for $name"
    fi

    existing=$(_loki_openstack flavor show -f value -c ram "$name" \
        2>/dev/null) || existing=""
    if [[ -z "$existing" ]]; then
        _loki_openstack flavor create --ram "$ram" \
            --vcpus "$LOKI_FLAVOR_VCPUS" --disk "$LOKI_FLAVOR_DISK_GB" \
            "$name"
    elif [[ "$existing" != "$ram" ]]; then
        die $LINENO "flavor $name exists with $existing MiB of RAM," \
            "not $ram: delete it or rename LOKI_FLAVOR_*_NAME"
    fi
    _loki_openstack flavor set "${props[@]}" "$name"
}

# create_loki_flavors - the example static and on-demand flavors
function create_loki_flavors {
    local -a ceiling=()
    if [[ -n "$LOKI_FLAVOR_ON_DEMAND_DRAM_MAX_MB" ]]; then
        ceiling=(--dram-max-mb "$LOKI_FLAVOR_ON_DEMAND_DRAM_MAX_MB")
    fi
    create_loki_flavor "$LOKI_FLAVOR_STATIC_NAME" \
        "$LOKI_FLAVOR_STATIC_RAM_MB" --policy static \
        --dram-percent "$LOKI_FLAVOR_STATIC_DRAM_PERCENT"
    create_loki_flavor "$LOKI_FLAVOR_ON_DEMAND_NAME" \
        "$LOKI_FLAVOR_ON_DEMAND_RAM_MB" --policy on_demand \
        --dram-mb "$LOKI_FLAVOR_ON_DEMAND_DRAM_MB" "${ceiling[@]}"
}

# cleanup_loki_nova - remove what configure_loki_memtier and the agent
# left: the configuration file, its directory when nothing else is in
# it, and the agent's runtime state
function cleanup_loki_nova {
    sudo rm -f "$LOKI_MEMTIER_CONF"
    sudo rmdir "$(dirname "$LOKI_MEMTIER_CONF")" 2>/dev/null || true
    if [[ "$LOKI_MEMTIER_STATE_DIR" == /?* ]]; then
        sudo rm -rf "$LOKI_MEMTIER_STATE_DIR"
    fi
}

# Dispatch
# --------

if [[ "${1:-}" == "stack" && "${2:-}" == "install" ]]; then
    echo_summary "Installing loki-nova"
    install_loki_nova

elif [[ "${1:-}" == "stack" && "${2:-}" == "post-config" ]]; then
    if is_service_enabled n-cpu; then
        echo_summary "Configuring nova-compute for loki.LokiDriver"
        configure_loki_nova_compute
        if is_service_enabled loki-memtier; then
            echo_summary "Configuring loki-memtier-agent"
            configure_loki_memtier
        fi
    fi

elif [[ "${1:-}" == "stack" && "${2:-}" == "extra" ]]; then
    if is_service_enabled n-cpu && is_service_enabled loki-memtier; then
        echo_summary "Starting loki-memtier-agent"
        start_loki_memtier
    fi
    if is_service_enabled n-api \
        && [[ "$(trueorfalse True LOKI_CREATE_FLAVORS)" == "True" ]]; then
        echo_summary "Creating the loki example flavors"
        create_loki_flavors
    fi

elif [[ "${1:-}" == "unstack" ]]; then
    if is_service_enabled loki-memtier; then
        stop_loki_memtier
    fi

elif [[ "${1:-}" == "clean" ]]; then
    cleanup_loki_nova
fi

$_LOKI_XTRACE
