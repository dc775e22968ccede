/*
 * Helpers shared by the editor forms of the esp-fleet nodes. Node-RED serves this file at
 * resources/node-red-contrib-esp-fleet/editor.js; each node's .html loads it before its own script.
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

    return { DNS_NAME: DNS_NAME, blank: blank, wholeNumber: wholeNumber };
})();
