"""Shared writers of the example models' scripts: golden.json, the example
request bodies under examples/, and config.yaml, in one format for every
model. Imported by models/<name>/make_model.py (which put this folder on
sys.path); not a script itself."""
import json
import os

import numpy as np


def fl(values):
    """float array -> list of Python floats holding exact float32 values
    (repr round-trips to the same float32)."""
    return [float(v) for v in np.asarray(values, dtype=np.float32).ravel()]


def short(values):
    """float array -> list of Python floats written with the shortest decimal
    that still parses to the same float32 (5.8 rather than 5.800000190734863);
    used for the human-facing example request bodies."""
    return [float(str(v)) for v in np.asarray(values, dtype=np.float32).ravel()]


def write_json(here, rel, obj):
    """Write obj as JSON to here/rel, creating folders."""
    path = os.path.join(here, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)
        f.write("\n")
    print("wrote", os.path.relpath(path, here))


def fl_missing(values):
    """Like fl, but NaN (a missing value) becomes None, written as JSON null
    (NaN is not valid JSON). Identical to fl for arrays without NaN."""
    return [None if np.isnan(v) else float(v) for v in np.asarray(values, dtype=np.float32).ravel()]


def tensor(datatype, values):
    """{"datatype", "shape", "data"} of a golden tensor, flat and row-major:
    FP32 as exact float32 values (NaN -> null), INT64 as ints, BYTES as
    strings."""
    a = np.asarray(values)
    if datatype == "FP32":
        data = fl_missing(a)
    elif datatype == "INT64":
        data = [int(v) for v in a.ravel()]
    elif datatype == "BYTES":
        data = [str(v) for v in a.ravel()]
    else:
        raise ValueError(f"unsupported datatype {datatype}")
    return {"datatype": datatype, "shape": list(a.shape), "data": data}


def write_model_files(here, *, framework, model, version, x, outputs, expected, config_yaml):
    """Write golden.json (the framework's outputs on the golden rows x, FP32
    input "input" [n, features], NaN written as null), the example requests
    (rows 0 and 1 of x, which must be complete) with expected.json (the dict
    `expected`, row 0's answer), and config.yaml. outputs maps each output
    name, in the order to write, to (datatype, array) with the batch first."""
    x = np.asarray(x, dtype=np.float32)
    n, features = x.shape
    write_json(here, "golden.json", {
        "framework": framework,
        "model": model,
        "version": version,
        "inputs": {"input": tensor("FP32", x)},
        "outputs": {name: tensor(dt, v) for name, (dt, v) in outputs.items()},
    })
    assert not np.isnan(x[:2]).any(), "example rows 0 and 1 must not contain missing values"
    row0, row1 = short(x[0]), short(x[1])
    write_json(here, "examples/predict.json", {"features": row0})
    write_json(here, "examples/predict-batch.json", {"features": [row0, row1]})
    write_json(here, "examples/v2.json", {"id": "example-1", "inputs": [
        {"name": "input", "shape": [1, features], "datatype": "FP32", "data": row0}]})
    write_json(here, "examples/tfs.json", {"instances": [row0]})
    write_json(here, "examples/expected.json", expected)
    with open(os.path.join(here, "config.yaml"), "w") as f:
        f.write(config_yaml)
    print("wrote config.yaml")


def write_outputs(here, *, framework, model, version, x, logits, probs, label, config_yaml):
    """Write golden.json (the framework's outputs on the golden rows x), the
    example requests (rows 0 and 1 of x) with expected.json (row 0's answer),
    and config.yaml, for a model with one FP32 input "input" [n, features]
    and outputs logits, probabilities [n, classes] and label [n]."""
    write_model_files(here, framework=framework, model=model, version=version, x=x,
                      outputs={"logits": ("FP32", logits), "probabilities": ("FP32", probs),
                               "label": ("INT64", label)},
                      expected={"label": int(label[0]), "probabilities": fl(probs[0])},
                      config_yaml=config_yaml)
