"""The precision policy: chosen from the hardware, overridable, and a bfloat16 model exports as float32."""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

import cnn
import contract
import networks

# slow: trains in each precision.
pytestmark = pytest.mark.slow

CNN = networks.get_network("cnn")
SAPPHIRE_RAPIDS = frozenset({"avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"})
GENOA = frozenset({"avx512f", "avx512_vnni", "avx512_bf16"})
ICE_LAKE = frozenset({"avx512f", "avx512_vnni"})
HASWELL = frozenset({"avx2", "fma"})


@pytest.mark.parametrize(
    "cpu, gpus, expected",
    [
        (SAPPHIRE_RAPIDS, (), "mixed_bfloat16"),
        (GENOA, (), "mixed_bfloat16"),
        (frozenset({"amx_tile", "amx_bf16"}), (), "mixed_bfloat16"),
        (ICE_LAKE, (), "float32"),
        (HASWELL, (), "float32"),
        (HASWELL, ((8, 0),), "mixed_bfloat16"),  # A100
        (HASWELL, ((9, 0),), "mixed_bfloat16"),  # H100
        (SAPPHIRE_RAPIDS, ((7, 5),), "mixed_float16"),  # T4: the GPU runs the model, not the CPU
        (HASWELL, ((7, 0),), "mixed_float16"),  # V100
        (SAPPHIRE_RAPIDS, ((6, 0),), "float32"),  # P100: no tensor cores
        (HASWELL, ((8, 6), (7, 5)), "mixed_float16"),  # the least capable GPU decides
    ],
)
def test_auto_picks_the_policy_from_cpu_flags_and_gpu_capabilities(cpu, gpus, expected):
    chosen = contract.choose_precision("auto", contract.Hardware(cpu, gpus))
    assert chosen.policy == expected
    assert chosen.reason.startswith("auto: ")


def test_the_reason_names_what_decided():
    on_genoa = contract.choose_precision("auto", contract.Hardware(GENOA))
    assert on_genoa.reason == "auto: no GPU; the CPU has avx512_bf16"
    on_t4 = contract.choose_precision("auto", contract.Hardware(HASWELL, ((7, 5),)))
    assert on_t4.reason == "auto: GPU compute capability 7.5 has float16 but no bfloat16 tensor cores"
    on_ice_lake = contract.choose_precision("auto", contract.Hardware(ICE_LAKE))
    assert on_ice_lake.reason == "auto: no GPU, and the CPU has none of avx512_bf16, amx_bf16"


@pytest.mark.parametrize(
    "requested, cpu, expected",
    [
        ("float32", SAPPHIRE_RAPIDS, "float32"),
        ("bfloat16", HASWELL, "mixed_bfloat16"),
        ("float16", SAPPHIRE_RAPIDS, "mixed_float16"),
    ],
)
def test_the_precision_hyperparameter_overrides_the_hardware(requested, cpu, expected):
    chosen = contract.choose_precision(requested, contract.Hardware(cpu))
    assert chosen.policy == expected
    automatic = contract.choose_precision("auto", contract.Hardware(cpu)).policy
    assert chosen.reason.startswith(f"precision={requested} was asked for (auto would pick {automatic}: ")


def test_hardware_is_read_from_cpuinfo_and_the_gpus(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx512f avx512_bf16\n\n"
        "processor\t: 1\nflags\t\t: fpu avx512f avx512_bf16\n"
    )
    gpus = ["GPU:0", "GPU:1"]
    details = {"GPU:0": {"compute_capability": (8, 6)}, "GPU:1": {"compute_capability": (7, 5)}}
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind: gpus if kind == "GPU" else [])
    monkeypatch.setattr(tf.config.experimental, "get_device_details", details.__getitem__)
    assert contract.Hardware.detect(cpuinfo) == contract.Hardware(
        frozenset({"fpu", "avx512f", "avx512_bf16"}), ((8, 6), (7, 5))
    )
    gpus.clear()
    assert contract.Hardware.detect(tmp_path / "missing") == contract.Hardware(frozenset())


@pytest.fixture
def digits(tmp_path_factory):
    """All of sklearn's digits as channels: a test set of 360 images."""
    from mlops.datasets import PREPARERS

    return PREPARERS["digits"].prepare(tmp_path_factory.mktemp("digits"))


def _arguments(channels, work, *extra):
    folders = [part for channel, folder in channels.items() for part in (f"--{channel}", str(folder))]
    return [
        *folders,
        "--model_dir",
        str(work / "model"),
        "--output_dir",
        str(work / "output"),
        "--checkpoint_dir",
        str(work / "checkpoints"),
        *extra,
    ]


@pytest.fixture
def global_policy():
    """`Job.use_precision` sets Keras' process-wide policy; put it back for the other tests."""
    before = keras.mixed_precision.global_policy()
    yield
    keras.mixed_precision.set_global_policy(before)


def test_a_job_applies_and_logs_its_policy(tmp_path, digits, global_policy, caplog):
    job = contract.Job.from_arguments(CNN, _arguments(digits, tmp_path, "--precision", "float16"))
    with caplog.at_level(logging.INFO, logger="training"):
        job.use_precision()
    assert keras.mixed_precision.global_policy().name == "mixed_float16"
    assert "precision policy mixed_float16: precision=float16 was asked for" in caplog.text
    # What the entry points rely on: Keras scales the loss under float16 (gradients would
    # underflow), keeps variables float32, and the output layer stays float32.
    model = cnn.build_model(job.input_shape, len(job.class_names), job.hyperparameters)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert {variable.dtype for variable in model.weights} == {"float32"}
    assert model.layers[1].compute_dtype == "float16"
    assert model.predict(np.zeros((2, *job.input_shape)), verbose=0).dtype == np.float32

    with pytest.raises(contract.InputError, match="precision must be one of auto, float32, bfloat16, float16"):
        contract.Job.from_arguments(CNN, _arguments(digits, tmp_path, "--precision", "float64"))


def test_checkpoints_of_another_resolved_policy_are_not_resumed(tmp_path, digits, monkeypatch):
    fingerprints = set()
    for flags in (GENOA, ICE_LAKE):
        monkeypatch.setattr(contract.Hardware, "detect", classmethod(lambda cls, flags=flags: contract.Hardware(flags)))
        job = contract.Job.from_arguments(CNN, _arguments(digits, tmp_path))
        assert job.hyperparameters.precision == "auto"
        fingerprints.add(job._fingerprint("train", epochs=3))
    assert len(fingerprints) == 2


def test_a_bfloat16_cnn_exports_float32_in_and_out_and_predicts_as_it_did_in_training(
    tmp_path, digits, global_policy, monkeypatch
):
    job = contract.Job.from_arguments(CNN, _arguments(digits, tmp_path, "--precision", "bfloat16", "--epochs", "8"))
    job.use_precision()
    trained = {}
    save_model = job.save_model

    def keep_the_model(serve, *, track, **given):
        trained["model"] = track[0]
        return save_model(serve, track=track, **given)

    monkeypatch.setattr(job, "save_model", keep_the_model)
    cnn.train(job)
    model = trained["model"]
    assert model.layers[1].compute_dtype == "bfloat16"

    images = np.concatenate([batch.numpy() for batch in job.dataset("test", targets=False)])
    assert len(images) == 360
    probabilities = model.predict(images, verbose=0)
    assert probabilities.dtype == np.float32
    in_training = np.argmax(probabilities, axis=1)
    keras.mixed_precision.set_global_policy("float32")
    same_weights_in_float32 = cnn.build_model(job.input_shape, len(job.class_names), job.hyperparameters)
    same_weights_in_float32.set_weights(model.get_weights())
    in_float32 = np.argmax(same_weights_in_float32.predict(images, verbose=0), axis=1)

    signature = tf.saved_model.load(str(tmp_path / "model" / contract.MODEL_VERSION)).signatures["serving_default"]
    (_, inputs) = signature.structured_input_signature
    assert {name: spec.dtype for name, spec in inputs.items()} == {"image": tf.float32}
    assert {name: spec.dtype for name, spec in signature.structured_outputs.items()} == {"probabilities": tf.float32}
    served = signature(image=tf.constant(images, tf.float32))["probabilities"].numpy()
    exported = np.argmax(served, axis=1)

    assert np.mean(exported == in_training) >= 0.99
    assert np.mean(exported == in_float32) >= 0.99
    # The export computes in bfloat16 too (it is the trained model, not a float32 copy of it).
    casts = {
        node.attr["DstT"].type
        for function in signature.graph.as_graph_def().library.function
        for node in function.node_def
        if node.op == "Cast"
    }
    assert tf.bfloat16.as_datatype_enum in casts
    # The drift monitor's embedding signature answers float32 as well, whatever the model computes in.
    embedding = tf.saved_model.load(str(tmp_path / "model" / contract.MODEL_VERSION)).signatures["embedding"]
    assert embedding(image=tf.constant(images[:2], tf.float32))["embedding"].dtype == tf.float32
