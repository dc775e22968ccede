/*
 * Helpers shared by the editor forms of the esp-fleet nodes. Node-RED serves this file at
 * resources/node-red-contrib-esp-fleet/editor.js; each node's .html loads it (after domain.js,
 * the lists generated from lib/ at build time) before its own script.
 */
window.EspFleetEditor = (function () {
    "use strict";

    // The same host name rule the CA applies to server certificates (lib/pki/names.ts).
    var DNS_LABEL = "[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?";
    var DNS_NAME = new RegExp("^" + DNS_LABEL + "(?:\\." + DNS_LABEL + ")*$", "i");

    /** An empty text field (the runtime then uses its default). */
    function blank(v) {
        return v === undefined || v === null || String(v).trim() === "";
    }

    /** Empty (the runtime default) or a whole number from min to max (no max: unbounded). */
    function wholeNumber(min, max) {
        return function (v) {
            if (v === undefined || v === null || v === "") { return true; }
            var n = Number(v);
            return Number.isInteger(n) && n >= min && (max === undefined || n <= max);
        };
    }

    // domain.js and this file load side by side (the editor adds both as async scripts), so the
    // generated lists are read when a form checks a value, by then both have loaded.
    function domain() {
        return window.EspFleetDomain;
    }

    /** A MAC in one of the spellings the runtime accepts (lib/device-id.ts). */
    function isDeviceId(v) {
        return domain().deviceId.some(function (r) { return new RegExp(r.source, r.flags).test(String(v).trim()); });
    }

    /** A backend identity name (lib/pki/names.ts): a name, and never one that reads as a device id. */
    function isBackendName(v) {
        var rule = domain().backendName;
        return new RegExp(rule.source, rule.flags).test(v) && !isDeviceId(v);
    }

    /** A port field: empty (the default) or the runtime's own range (lib/net/port.ts). */
    function port(v) {
        return wholeNumber(domain().port.min, domain().port.max)(v);
    }

    /** Blank, or ids and id prefixes (`84f3eb*`) separated by commas or spaces (lib/enroll/enroll-policy.ts). */
    function isAllowlist(v) {
        var prefix = domain().enrollPrefix;
        return blank(v) || String(v).split(/[\s,]+/).filter(Boolean).every(function (e) {
            return new RegExp(prefix.source, prefix.flags).test(e) || isDeviceId(e);
        });
    }

    return { isAllowlist: isAllowlist, DNS_NAME: DNS_NAME, blank: blank, wholeNumber: wholeNumber, isDeviceId: isDeviceId, isBackendName: isBackendName, port: port };
})();
