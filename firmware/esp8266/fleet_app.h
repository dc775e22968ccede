// The Arduino glue of the fleet firmware: Wi-Fi, TLS, MQTT, OTA and files around the portable
// core in ../core (fleet_core.h), which holds every decision that can be tested on a host.
#pragma once

// Connects the device (SmartConfig Wi-Fi, NTP, config.json, TLS material) and then calls
// `custom`. `image` is the running image's name, `build` its build date and time.
void fleetSetup(const char* image, const char* build, void (*custom)());

// One pass: MQTT, commands, status, LED and the loop watchdog; `custom` runs inside the pass
// (its time counts for maxmillis and the watchdog).
void fleetLoop(void (*custom)());
