from __future__ import annotations

import pytest

from devices.csvio import (
    DEVICE_COLUMNS,
    ROLLOUT_COLUMNS,
    export_devices,
    export_rollout,
    import_devices,
    import_rollout,
    parse_devices,
    read_devices,
)
from devices.errors import CsvError, RegistryError
from devices.fleet import sample_fleet, sample_rollout
from devices.model import Device

HEADER = ",".join(DEVICE_COLUMNS)

GOOD = f"""{HEADER}
bridge-0001-s1,bridge,武昌区,30.549412,114.287913,BR-0001,武汉长江大桥,市桥梁管理处,installed,2026-03-02,"{{""sensor"": ""strain"", ""design_strain_ue"": 450, ""span"": 3}}"
toilet-jianghan-0001,toilet,江汉区,,,WC-1,"江汉路步行街公厕, 北口",江汉区城管执法局,,,
gas-jianghan-000001,gas_meter,江汉区,30.6,114.27,4201030000001,"新华路""幸福""小区
3栋502室",武汉市燃气集团,planned,2026/3/2,
"""  # noqa: E501 (a CSV row is one line: splitting it would change the data)


def write(tmp_path, text: str, name: str = "devices.csv", bom: bool = False):
    p = tmp_path / name
    p.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return p


def problems(text: str) -> list[tuple[int, str, str]]:
    with pytest.raises(CsvError) as e:
        parse_devices(text)
    return [tuple(p) for p in e.value.errors]


def test_import_good_file(registry, tmp_path):
    assert import_devices(registry, write(tmp_path, GOOD)) == 3
    b = registry.get("bridge-0001-s1")
    assert b.attrs == {"sensor": "strain", "design_strain_ue": 450, "span": 3}
    assert (b.lat, b.lon, b.installed_at) == (30.549412, 114.287913, "2026-03-02")
    t = registry.get("toilet-jianghan-0001")
    assert (t.asset_name, t.status, t.lat, t.attrs, t.installed_at) == (
        "江汉路步行街公厕, 北口", "installed", None, {}, None)
    g = registry.get("gas-jianghan-000001")
    assert g.asset_name == '新华路"幸福"小区\n3栋502室'  # quoted newline and quotes
    assert (g.status, g.installed_at) == ("planned", "2026-03-02")  # spreadsheet date normalised


def test_bom_and_crlf_accepted(registry, tmp_path):
    p = write(tmp_path, GOOD.replace("\n", "\r\n"), bom=True)
    assert import_devices(registry, p) == 3
    assert registry.get("gas-jianghan-000001").asset_name == '新华路"幸福"小区\r\n3栋502室'


def test_only_required_columns_any_order():
    devices = parse_devices("district,kind,device_id\n江汉区,noise,n-1\n")
    assert devices == [Device("n-1", "noise", "江汉区")]


@pytest.mark.parametrize("row, column, message", [
    ("b-1,bridg,江汉区,,,,,,,,", "kind", "unknown kind 'bridg' (known: bridge, gas_meter"),
    ("bad id,noise,江汉区,,,,,,,,", "device_id", "bad device id 'bad id'"),
    ("b-1,noise,江汉区,abc,114,,,,,,", "lat", "expected a number, got 'abc'"),
    ("b-1,noise,江汉区,91,114,,,,,,", "lat", "outside -90..90"),
    ("b-1,noise,江汉区,30,-181,,,,,,", "lon", "outside -180..180"),
    ("b-1,noise,江汉区,30,nan,,,,,,", "lon", "finite"),
    ("b-1,noise,江汉区,30,,,,,,,", "lon", "lat and lon must be given together"),
    ("b-1,noise,江汉区,,,,,,broken,,", "status", "unknown status 'broken'"),
    ("b-1,noise,江汉区,,,,,,,2026-02-30,", "installed_at", "no such date '2026-02-30'"),
    ("b-1,noise,江汉区,,,,,,,March 2,", "installed_at", "expected a date like 2026-03-02"),
    ('b-1,noise,江汉区,,,,,,,,"{""a"": 1"', "attrs", "bad JSON"),
    ('b-1,noise,江汉区,,,,,,,,"[1, 2]"', "attrs", "must be a JSON object"),
    ('b-1,noise,江汉区,,,,,,,,"{""a"": NaN}"', "attrs", "NaN is not allowed"),
    ('b-1,noise,江汉区,,,,,,,,"{""a"": 1e400}"', "attrs", "1e400 is out of range"),
    (",noise,江汉区,,,,,,,,", "device_id", "device_id is required"),
    ("b-1,,江汉区,,,,,,,,", "kind", "kind is required"),
    ("b-1,noise, ,,,,,,,,", "district", "district is required"),
    ("b-1,noise,江汉区,,", "", "row has 5 fields, the header has 11"),
])
def test_each_error_named_by_line_and_column(row, column, message):
    found = problems(f"{HEADER}\nok-1,noise,江汉区,,,,,,,,\n{row}\n")
    assert len(found) == 1, found
    line, col, msg = found[0]
    assert (line, col) == (3, column)
    assert message in msg


def test_duplicate_id_names_both_lines():
    found = problems(f"{HEADER}\nb-1,noise,江汉区,,,,,,,,\nb-2,noise,江汉区,,,,,,,,\nb-1,noise,江汉区,,,,,,,,\n")
    assert found == [(4, "device_id", "duplicate device_id 'b-1' (first on line 2)")]


def test_header_errors():
    assert problems("device_id,kind,district,colour\n") == [
        (1, "colour", "unknown column 'colour' (known: " + ", ".join(DEVICE_COLUMNS) + ")")]
    assert problems("device_id,district\n") == [(1, "kind", "missing required column")]
    assert problems("device_id,kind,kind,district\n") == [(1, "kind", "column appears twice in the header")]
    assert problems("")[0][:2] == (1, "")


def test_every_bad_row_reported_and_message_format():
    text = (f"{HEADER}\nb-1,bridg,江汉区,,,,,,,,\nb-2,noise,江汉区,x,y,,,,,,\n"
            "ok,noise,江汉区,,,,,,,,\nb-1,noise,,,,,,,,,\n")
    with pytest.raises(CsvError) as e:
        parse_devices(text, "devices.csv")
    assert [(p.line, p.column) for p in e.value.errors] == [
        (2, "kind"), (3, "lat"), (3, "lon"), (5, "device_id"), (5, "district")]
    lines = str(e.value).splitlines()
    assert lines[0] == "devices.csv: 5 problems, nothing imported"
    assert lines[1] == ("devices.csv line 2, column kind: unknown kind 'bridg' "
                        "(known: bridge, gas_meter, fume, noise, toilet, lighting)")
    assert isinstance(e.value, RegistryError)


def test_line_numbers_follow_quoted_newlines():
    text = f'{HEADER}\nb-1,noise,江汉区,,,,"two\nlines",,,,\nb-2,bridg,江汉区,,,,,,,,\n'
    [(line, col, msg)] = problems(text)
    assert (line, col) == (4, "kind")
    assert msg.endswith("(row 3 in a spreadsheet)")


def test_bad_file_changes_nothing(registry, tmp_path):
    import_devices(registry, write(tmp_path, GOOD))
    before = [registry.get(d) for d in ("bridge-0001-s1", "toilet-jianghan-0001")]
    v = registry.version()
    bad = f"{HEADER}\nbridge-0001-s1,bridge,汉阳区,,,,,,,,\nnew-1,noise,江汉区,,,,,,,,\nx,bridg,江汉区,,,,,,,,\n"
    with pytest.raises(CsvError):
        import_devices(registry, write(tmp_path, bad, "bad.csv"))
    assert [registry.get(d) for d in ("bridge-0001-s1", "toilet-jianghan-0001")] == before
    assert registry.get("new-1") is None and registry.count() == 3 and registry.version() == v


def test_not_utf8_is_explained(tmp_path):
    p = tmp_path / "gbk.csv"
    p.write_bytes(f"{HEADER}\nb-1,noise,江汉区,,,,,,,,\n".encode("gbk"))
    with pytest.raises(CsvError, match="gbk.csv line 2: not UTF-8 text.*CSV UTF-8"):
        read_devices(p)


def test_unterminated_quote_is_reported():
    found = problems(f'{HEADER}\nb-1,noise,江汉区,,,,"never closed,,,,\n')
    assert "malformed CSV" in found[0][2]


def test_export_import_lossless(registry, tmp_path):
    fleet = sample_fleet(0.002, seed=7)
    extra = [
        Device("odd-1", "noise", "江汉区", 0.1 + 0.2, -179.99999999999997, " 带空格 ", '引号"和,逗号\n换行',
               "江汉区城管执法局", "retired", "2024-02-29",
               {"名称": "测试", "nested": {"b": [1, 2.5, None]}, "a": True}),
        Device("odd-2", "fume", "东湖风景区", 1e-05, 1e-07, status="planned"),
    ]
    registry.upsert(fleet + extra)
    registry.mark_seen({"odd-1": 123})
    path = tmp_path / "out" / "devices.csv"
    assert export_devices(registry, path) == len(fleet) + 2
    data = path.read_bytes()
    assert not data.startswith(b"\xef\xbb\xbf") and "测试".encode() in data  # no \u escapes
    assert data.splitlines()[0].decode() == HEADER
    again = read_devices(path)
    stored = sorted((d for d in registry.iter_devices()), key=lambda d: d.device_id)
    def strip(d: Device) -> Device:  # derived fields are not exported
        return Device(*[getattr(d, f) for f in DEVICE_COLUMNS])

    assert again == [strip(d) for d in stored]

    other = type(registry).open(tmp_path / "other.db")
    import_devices(other, path)
    export_devices(other, tmp_path / "again.csv", bom=True)
    assert (tmp_path / "again.csv").read_bytes() == b"\xef\xbb\xbf" + data
    other.close()


def test_rollout_import_export(registry, tmp_path):
    targets = sample_rollout(0.01)
    lines = [",".join(ROLLOUT_COLUMNS)] + [
        f"{t.programme},{t.kind},{t.district},{t.target},{t.start},{t.deadline}" for t in targets]
    p = write(tmp_path, "\n".join(lines) + "\n", "rollout.csv", bom=True)
    assert import_rollout(registry, p) == len(targets)
    assert sum(t.target for t in registry.rollout_targets()) == 5000
    out = tmp_path / "rollout-out.csv"
    assert export_rollout(registry, out) == len(targets)
    other = type(registry).open(tmp_path / "other.db")
    import_rollout(other, out)
    assert other.rollout_targets() == registry.rollout_targets()
    other.close()


def test_rollout_errors(registry, tmp_path):
    text = ",".join(ROLLOUT_COLUMNS) + "\n" + "\n".join([
        "p,gas_meter,江汉区,100,2021-03-01,2023-12-31",
        "p,gas_meter,江汉区,100,2021-03-01,2023-12-31",
        "p,gas,武昌区,-5,2021-03-01,2020-12-31",
        "p,gas_meter,武昌区,1.5,,2023-12-31",
        ",gas_meter,硚口区,0,2021-03-01,2023-12-31",
    ]) + "\n"
    with pytest.raises(CsvError) as e:
        import_rollout(registry, write(tmp_path, text, "rollout.csv"))
    assert [(p.line, p.column) for p in e.value.errors] == [
        (3, "district"), (4, "kind"), (4, "target"), (5, "target"), (5, "start"), (6, "programme")]
    assert "duplicate target for p/gas_meter/江汉区 (first on line 2)" in str(e.value)
    assert registry.rollout_targets() == []


def test_blank_lines_and_unnamed_empty_columns_are_ignored():
    text = f"{HEADER},,\nb-1,noise,江汉区,,,,,,,,,,\n\n,,,,,,,,,,,,\nb-2,noise,江汉区,,,,,,,,,,\n"
    assert [d.device_id for d in parse_devices(text)] == ["b-1", "b-2"]
    found = problems(f"{HEADER},\nb-1,noise,江汉区,,,,,,,,,oops\n")
    assert found == [(2, "", "a value in a column without a header name (field 12)")]


def test_malformed_row_named_by_its_first_line():
    found = problems(f'{HEADER}\nb-1,noise,江汉区,,,,,,,,\nb-2,noise,江汉区,,,,"bad"quote,,,,\n')
    assert found[0][0] == 3 and "malformed CSV" in found[0][2]


def test_long_error_list_is_capped_in_the_message():
    rows = "\n".join(f"b-{i},bridg,江汉区,,,,,,,," for i in range(300))
    with pytest.raises(CsvError) as e:
        parse_devices(f"{HEADER}\n{rows}\n")
    assert len(e.value.errors) == 300
    text = str(e.value).splitlines()
    assert len(text) == 1 + 200 + 1 and text[-1] == "... and 100 more"


def test_write_devices_then_read_gives_the_same_devices(tmp_path):
    from devices.csvio import write_devices

    fleet = sample_fleet(0, seed=3, min_per_kind=4)
    assert write_devices(fleet, tmp_path / "fleet.csv") == len(fleet)
    assert read_devices(tmp_path / "fleet.csv") == fleet
