"""Helpers of the deployment tests."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "classify"))

from classify_testutils import bar_images  # noqa: E402


def bar_pngs(folder: Path, n: int, size: int = 28) -> list[Path]:
    """``n`` grey bar images ``img000.png`` ... (the classifier's kind of input)."""
    from PIL import Image as PILImage

    folder.mkdir(parents=True, exist_ok=True)
    images, _ = bar_images(n, size, seed=7)
    paths = []
    for i, img in enumerate(images):
        paths.append(folder / f"img{i:03d}.png")
        PILImage.fromarray(img).save(paths[-1])
    return paths


def cube_dataset(root: Path, n: int = 4, size: int = 16, seed: int = 0) -> Path:
    """A tiny 3D one-channel MSD dataset: noisy volumes with a bright cube, labelled 1."""
    import numpy as np

    from medsight.data.msd import write_dataset_json
    from medsight.io import Image, write_image

    rng = np.random.default_rng(seed)
    for i in range(n):
        vol = rng.normal(0, 10, (size, size, size)).astype(np.float32)
        lab = np.zeros((size, size, size), np.uint8)
        a = rng.integers(2, size // 2, 3)
        lab[a[0] : a[0] + size // 3, a[1] : a[1] + size // 3, a[2] : a[2] + size // 3] = 1
        vol[lab == 1] += 100
        write_image(
            Image.from_array(vol, channel_first=False), root / "imagesTr" / f"cube_{i:03d}_0000.nii.gz"
        )
        write_image(Image.from_array(lab, channel_first=False), root / "labelsTr" / f"cube_{i:03d}.nii.gz")
    write_dataset_json(
        root,
        {
            "name": "cubes",
            "channel_names": {"0": "CT"},
            "labels": {"background": 0, "cube": 1},
            "numTraining": n,
            "file_ending": ".nii.gz",
        },
    )
    return root


def dicom_series_zip(path: Path, volume, patient: str = "Doe^Jane") -> Path:  # noqa: ANN001
    """``volume`` (rows, cols, slices) int16 as a CT series of single-frame files, zipped."""
    import zipfile

    import numpy as np
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    series, study = generate_uid(), generate_uid()
    with zipfile.ZipFile(path, "w") as archive:
        for k in range(volume.shape[2]):
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = CTImageStorage
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = FileDataset(f"slice{k}.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
            ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
            ds.PatientName, ds.PatientID, ds.Modality = patient, "ID-12345", "CT"
            ds.InstanceNumber = k + 1
            ds.ImagePositionPatient = [0.0, 0.0, 2.0 * k]
            ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
            ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], 2.0
            ds.Rows, ds.Columns = volume.shape[:2]
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            ds.RescaleSlope, ds.RescaleIntercept = 1, 0
            ds.PixelData = np.ascontiguousarray(volume[:, :, k].astype(np.int16)).tobytes()
            tmp = path.with_name(f".slice{k}.dcm")
            ds.save_as(tmp, enforce_file_format=True)
            archive.write(tmp, f"series/slice{k:03d}.dcm")
            tmp.unlink()
    return path
