"""Data for convvit: image folders, Fashion-MNIST, CIFAR-10/100 and synthetic images as a LightningDataModule,
plus the image loading and transforms that prediction uses."""
from convvit.data.datamodule import DATASETS, ImageDataModule, RepeatAugSampler
from convvit.data.datasets import ImageFileDataset, TensorImageDataset, make_synthetic
from convvit.data.images import IMG_EXTENSIONS, BadImageError, convert_image, list_images, load_image
from convvit.data.transforms import BatchTrainTransform, build_eval_transform, build_train_transform

__all__ = [
    "DATASETS", "IMG_EXTENSIONS", "BadImageError", "BatchTrainTransform", "ImageDataModule", "ImageFileDataset",
    "RepeatAugSampler", "TensorImageDataset", "build_eval_transform", "build_train_transform", "convert_image",
    "list_images", "load_image", "make_synthetic",
]
