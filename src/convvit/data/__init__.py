"""Data for convvit: a registry of datasets (image folders, Fashion-MNIST, CIFAR-10/100, synthetic), one
LightningDataModule over them, plus the image loading and transforms that prediction uses."""
from convvit.data.datamodule import ImageDataModule
from convvit.data.datasets import ImageFileDataset, TensorImageDataset, make_synthetic
from convvit.data.images import IMG_EXTENSIONS, BadImageError, convert_image, list_images, load_image
from convvit.data.registry import DatasetSpec, get_dataset, list_datasets, register_dataset
from convvit.data.samplers import RepeatAugSampler
from convvit.data.transforms import BatchTrainTransform, build_eval_transform, build_train_transform

__all__ = [
    "IMG_EXTENSIONS", "BadImageError", "BatchTrainTransform", "DatasetSpec", "ImageDataModule", "ImageFileDataset",
    "RepeatAugSampler", "TensorImageDataset", "build_eval_transform", "build_train_transform", "convert_image",
    "get_dataset", "list_datasets", "list_images", "load_image", "make_synthetic", "register_dataset",
]
