#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace sluice::avro {

using Md5 = std::array<std::uint8_t, 16>;

/// Flume's AvroSourceProtocol as Flume 1.5-1.11.0 serve it (Protocol.toString(), 1334 bytes):
/// byte for byte, so that its MD5 is the hash every released Flume client expects.
inline constexpr std::string_view kFlumeProtocol =
    R"json({"protocol":"AvroSourceProtocol","namespace":"org.apache.flume.source.avro","doc":"* Licensed to the Apache Software Foundation (ASF) under one\n * or more contributor license agreements.  See the NOTICE file\n * distributed with this work for additional information\n * regarding copyright ownership.  The ASF licenses this file\n * to you under the Apache License, Version 2.0 (the\n * \"License\"); you may not use this file except in compliance\n * with the License.  You may obtain a copy of the License at\n *\n * http://www.apache.org/licenses/LICENSE-2.0\n *\n * Unless required by applicable law or agreed to in writing,\n * software distributed under the License is distributed on an\n * \"AS IS\" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY\n * KIND, either express or implied.  See the License for the\n * specific language governing permissions and limitations\n * under the License.","types":[{"type":"enum","name":"Status","symbols":["OK","FAILED","UNKNOWN"]},{"type":"record","name":"AvroFlumeEvent","fields":[{"name":"headers","type":{"type":"map","values":"string"}},{"name":"body","type":"bytes"}]}],"messages":{"append":{"request":[{"name":"event","type":"AvroFlumeEvent"}],"response":"Status"},"appendBatch":{"request":[{"name":"events","type":{"type":"array","items":"AvroFlumeEvent"}}],"response":"Status"}}})json";

/// MD5 of kFlumeProtocol (Flume 1.5-1.11.0).
inline constexpr Md5 kFlumeHash = {0x86, 0xaa, 0xda, 0xe2, 0xc4, 0x54, 0x74, 0xc0,
                                   0xfe, 0x93, 0xff, 0xd0, 0xf2, 0x35, 0x0a, 0x65};
/// Flume HEAD built with Avro 1.11.1 (the doc comment cleaned differently, same messages).
inline constexpr Md5 kFlumeHeadHash = {0x80, 0x76, 0xc5, 0x37, 0x14, 0xe0, 0x1f, 0x6e,
                                       0x2c, 0x1d, 0xeb, 0x95, 0x44, 0xe7, 0xb1, 0xfe};

enum class CallStatus : std::uint8_t { ok = 0, failed = 1, unknown = 2 };
enum class Match : std::uint8_t { both = 0, client = 1, none = 2 };

}  // namespace sluice::avro
