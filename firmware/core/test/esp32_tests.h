// The secure-esp32 host tests (esp32_tests.cpp), run as groups by host_tests.cpp.
#pragma once

#include <nlohmann/json.hpp>

void esp32TopicVectors(const nlohmann::json& vectors);       // test/vectors/esp32-device.json
void esp32PayloadVectors(const nlohmann::json& vectors);
void esp32DescriptorVectors(const nlohmann::json& vectors);
void esp32Settings();
void esp32Schedule();
void esp32Candidates();
void esp32Resume();
