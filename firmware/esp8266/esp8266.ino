// esp8266.ino: a device of the node-red-contrib-esp-fleet fleet (Wemos D1 mini, ESP8266 Arduino core 3.x).
// Build, filesystem and signing: see README.md beside this file. No credentials belong here:
// Wi-Fi comes from SmartConfig, servers from data/config.json, certificates and keys from data/.
#include "fleet_app.h"

// The image name the update server orders versions by (<PRODUCT>-<MM>.<mm>.<pp>.<b>).
// Bump the version for every image you publish; the product must stay the same.
#define FLEET_IMAGE "ESP8266_WEMOS_D1MINI-00.00.01.a"

void customSetup() {
  // put your setup code here
}

void customLoop() {
  // put your loop code here; keep each pass short (the watchdog reboots after ~6 s)
}

void setup() {
  fleetSetup(FLEET_IMAGE, __DATE__ " " __TIME__, customSetup);
}

void loop() {
  fleetLoop(customLoop);
}
